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
)

// Media says where virtual-media images are stored and what an image may
// be.
type Media struct {
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
	// GCGrace is how long an unreferenced copy stays; MaxFolderSize (0:
	// none) is a budget for the bridge's copies.
	GCGrace       time.Duration
	MaxFolderSize int64
}

// media reads the optional media section, with its defaults.
func (p *parser) media(fields map[string]*yaml.Node, m *Media) error {
	const pre = "media."
	m.MaxImageSize, m.StallTimeout, m.GCGrace = DefaultMaxImageSize, DefaultStallTimeout, DefaultMediaGCGrace
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
	if m.Folder, err = p.str(f, pre, "folder"); err != nil {
		return err
	}
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
	if in, ok := f["verifyCertificate"]; ok {
		if err := in.Decode(&m.VerifyCertificate); err != nil || in.Tag != "!!bool" {
			return p.err(in, pre+"verifyCertificate", "must be true or false")
		}
	}
	if m.CAFile, err = p.str(f, pre, "caFile"); err != nil {
		return err
	}
	if m.CAFile != "" {
		if err := p.caFile(f["caFile"], pre+"caFile", m.CAFile); err != nil {
			return err
		}
	}
	if l, ok := f["allowedNetworks"]; ok {
		if l.Kind != yaml.SequenceNode {
			return p.err(l, pre+"allowedNetworks", "must be a list of CIDRs such as 192.0.2.0/24")
		}
		for i, c := range l.Content {
			key := fmt.Sprintf("%sallowedNetworks[%d]", pre, i)
			if c.Kind != yaml.ScalarNode {
				return p.err(c, key, "must be a CIDR such as 192.0.2.0/24")
			}
			pfx, err := netip.ParsePrefix(c.Value)
			if err != nil {
				addr, aerr := netip.ParseAddr(c.Value)
				if aerr != nil {
					return p.err(c, key, fmt.Sprintf("%q is not a CIDR such as 192.0.2.0/24 or an address", c.Value))
				}
				pfx = netip.PrefixFrom(addr, addr.BitLen())
			}
			if pfx.Masked() != pfx {
				return p.err(c, key, fmt.Sprintf("%q has host bits set; did you mean %s?", c.Value, pfx.Masked()))
			}
			m.AllowedNetworks = append(m.AllowedNetworks, pfx)
		}
	}
	return nil
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
