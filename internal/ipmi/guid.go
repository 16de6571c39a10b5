package ipmi

import (
	"encoding/hex"
	"fmt"
	"strings"
)

// SMBIOSGUID encodes a canonical UUID the way SMBIOS (and most BMCs) store
// it: time_low, time_mid and time_hi_and_version little-endian, the rest as
// written. ipmitool 1.8.19 `mc guid` detects and prefers this encoding, and
// it is the same 16 bytes the guest's dmidecode shows as the system UUID.
func SMBIOSGUID(uuid string) ([16]byte, error) {
	var g [16]byte
	s := strings.ReplaceAll(uuid, "-", "")
	if len(s) != 32 || len(uuid) != 36 {
		return g, fmt.Errorf("uuid %q: not in canonical form", uuid)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return g, fmt.Errorf("uuid %q: %w", uuid, err)
	}
	copy(g[:], b)
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	return g, nil
}
