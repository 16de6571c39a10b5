package daemon

import (
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/metrics"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// mediaService is the virtual-media policy of the configuration (the
// defaults in simulator mode), counting into m and recording the copies
// it uploads in the state file, so that only those are ever collected.
func (d *Daemon) mediaService(m *metrics.Metrics) (*vsphere.MediaService, error) {
	mc := vsphere.MediaConfig{Observer: m, Log: d.log}
	if c := d.cfg; c != nil {
		mc.MaxImageSize, mc.StallTimeout = c.Media.MaxImageSize, c.Media.StallTimeout
		mc.VerifyCertificate, mc.CAFile, mc.AllowedNetworks = c.Media.VerifyCertificate, c.Media.CAFile, c.Media.AllowedNetworks
		mc.GCGrace, mc.MaxFolderSize = c.Media.GCGrace, c.Media.MaxFolderSize
	}
	if d.state != nil {
		mc.Store = d.state
	}
	return vsphere.NewMediaService(mc)
}
