package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Virtual-media defaults.
const (
	DefaultMaxImageSize = 16 << 30
	DefaultStallTimeout = 60 * time.Second
	DefaultMediaGCGrace = time.Hour
	// DefaultMediaFolder is the datastore folder inserted images go to.
	DefaultMediaFolder = "ipmi-vmware-bridge"
)

// Media is the virtual-media policy every VM of a bridge shares: where
// images are stored and what an image may be. The vsphere package's media
// service takes it as it is.
type Media struct {
	// Datastore holds the images ("": each VM's first datastore), in
	// Folder.
	Datastore, Folder string
	// MaxImageSize refuses larger images (bytes).
	MaxImageSize int64
	// StallTimeout cancels a transfer that received nothing for that long.
	StallTimeout time.Duration
	// VerifyCertificate is each drive's default for https images.
	VerifyCertificate bool
	// CAFile adds trusted CAs for https images (PEM).
	CAFile string
	// AllowedNetworks, when set, are the only networks image URLs and
	// their redirects may connect to.
	AllowedNetworks []netip.Prefix
	// GCGrace is how long an unreferenced copy stays (zero or negative: it
	// goes at once); MaxFolderSize (0: none) is a budget for the bridge's
	// copies.
	GCGrace       time.Duration
	MaxFolderSize int64
}

// DefaultMedia is the media policy of a configuration without a media
// section, and of the simulator mode, which has no configuration.
func DefaultMedia() Media {
	return Media{Folder: DefaultMediaFolder, MaxImageSize: DefaultMaxImageSize,
		StallTimeout: DefaultStallTimeout, GCGrace: DefaultMediaGCGrace}
}

// media reads the optional media section, with its defaults.
func (p *parser) media(fields map[string]*yaml.Node, m *Media) error {
	const pre = "media."
	*m = DefaultMedia()
	n, ok := fields["media"]
	if !ok {
		return nil
	}
	f, err := p.mapping(n, pre, "datastore", "folder", "maxImageSize", "stallTimeout", "verifyCertificate", "caFile",
		"allowedNetworks", "gcGrace", "maxFolderSize")
	if err != nil {
		return err
	}
	if m.Datastore, err = p.str(f, pre, "datastore"); err != nil {
		return err
	}
	folder, err := p.str(f, pre, "folder")
	if err != nil {
		return err
	}
	if folder != "" {
		m.Folder = folder // "" keeps the default, as it always has
	}
	for _, read := range []func(map[string]*yaml.Node, *Media) error{p.mediaSizes, p.mediaTimes, p.mediaTLS} {
		if err := read(f, m); err != nil {
			return err
		}
	}
	if l, ok := f["allowedNetworks"]; ok {
		if m.AllowedNetworks, err = p.networks(l, pre+"allowedNetworks"); err != nil {
			return err
		}
	}
	return nil
}

// mediaSizes reads media.maxImageSize and media.maxFolderSize.
func (p *parser) mediaSizes(f map[string]*yaml.Node, m *Media) error {
	const pre = "media."
	var err error
	if s, ok := f["maxImageSize"]; ok {
		if m.MaxImageSize, err = p.size(s, pre+"maxImageSize"); err != nil {
			return err
		}
		if m.MaxImageSize < 1<<20 {
			return p.err(s, pre+"maxImageSize", "must be at least 1MiB")
		}
	}
	if s, ok := f["maxFolderSize"]; ok {
		if m.MaxFolderSize, err = p.size(s, pre+"maxFolderSize"); err != nil {
			return err
		}
	}
	return nil
}

// mediaTimes reads media.stallTimeout and media.gcGrace.
func (p *parser) mediaTimes(f map[string]*yaml.Node, m *Media) error {
	const pre = "media."
	var err error
	if s, ok := f["stallTimeout"]; ok {
		if m.StallTimeout, err = p.duration(f, pre, "stallTimeout"); err != nil {
			return err
		}
		if m.StallTimeout < time.Second {
			return p.err(s, pre+"stallTimeout", "must be at least 1s")
		}
	}
	if _, ok := f["gcGrace"]; ok {
		if m.GCGrace, err = p.duration(f, pre, "gcGrace"); err != nil {
			return err
		}
		if m.GCGrace == 0 {
			m.GCGrace = -1 // 0 in the file: at once
		}
	}
	return nil
}

// mediaTLS reads media.verifyCertificate and media.caFile.
func (p *parser) mediaTLS(f map[string]*yaml.Node, m *Media) error {
	const pre = "media."
	if in, ok := f["verifyCertificate"]; ok {
		if err := in.Decode(&m.VerifyCertificate); err != nil || in.Tag != "!!bool" {
			return p.err(in, pre+"verifyCertificate", "must be true or false")
		}
	}
	var err error
	if m.CAFile, err = p.str(f, pre, "caFile"); err != nil {
		return err
	}
	if m.CAFile != "" {
		return p.caFile(f["caFile"], pre+"caFile", m.CAFile)
	}
	return nil
}

// networks reads a list of CIDRs (an address alone is its /32 or /128).
func (p *parser) networks(l *yaml.Node, key string) ([]netip.Prefix, error) {
	if l.Kind != yaml.SequenceNode {
		return nil, p.err(l, key, "must be a list of CIDRs such as 192.0.2.0/24")
	}
	var out []netip.Prefix
	for i, c := range l.Content {
		key := fmt.Sprintf("%s[%d]", key, i)
		if c.Kind != yaml.ScalarNode {
			return nil, p.err(c, key, "must be a CIDR such as 192.0.2.0/24")
		}
		pfx, err := netip.ParsePrefix(c.Value)
		if err != nil {
			addr, aerr := netip.ParseAddr(c.Value)
			if aerr != nil {
				return nil, p.err(c, key, fmt.Sprintf("%q is not a CIDR such as 192.0.2.0/24 or an address", c.Value))
			}
			pfx = netip.PrefixFrom(addr, addr.BitLen())
		}
		if pfx.Masked() != pfx {
			return nil, p.err(c, key, fmt.Sprintf("%q has host bits set; did you mean %s?", c.Value, pfx.Masked()))
		}
		out = append(out, pfx)
	}
	return out, nil
}

// size reads a number of bytes: a whole number, or one with a unit
// (KiB, MiB, GiB, TiB, or KB, MB, GB, TB).
func (p *parser) size(n *yaml.Node, key string) (int64, error) {
	const msg = "must be a size such as 16GiB, 500MiB or a number of bytes"
	if n.Kind != yaml.ScalarNode {
		return 0, p.err(n, key, msg)
	}
	v := strings.TrimSpace(n.Value)
	mult := int64(1)
	for _, u := range []struct {
		s string
		m int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}} {
		if strings.HasSuffix(v, u.s) {
			v, mult = strings.TrimSpace(strings.TrimSuffix(v, u.s)), u.m
			break
		}
	}
	num, err := strconv.ParseInt(v, 10, 64)
	if err != nil || num < 0 || num > (1<<62)/mult {
		return 0, p.err(n, key, msg)
	}
	return num * mult, nil
}
