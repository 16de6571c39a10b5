package daemon

import (
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/metrics"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// mediaService is the virtual-media policy of the configuration (its
// defaults in simulator mode, which has none), counting into m and
// recording the copies it uploads in the state file, so that only those
// are ever collected.
func (d *Daemon) mediaService(m *metrics.Metrics, statePrefix string) (*vsphere.MediaService, error) {
	mc := vsphere.MediaConfig{Media: config.DefaultMedia(), Observer: m, Log: d.log, StorePrefix: statePrefix}
	if c := d.cfg; c != nil {
		mc.Media = c.Media
	}
	if d.state != nil {
		mc.Store = d.state
	}
	return vsphere.NewMediaService(mc)
}
