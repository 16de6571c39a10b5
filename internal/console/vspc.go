package console

import (
	"crypto/rand"
	"strings"
)

// VMWARE-TELNET-EXT sub-option codes, from VMware's "Using a Proxy with
// vSphere Virtual Serial Ports". Each is the first payload byte of an
// IAC SB 232 ... IAC SE.
const (
	knownSuboptions1      = 0  // host: the sub-options it knows
	knownSuboptions2      = 1  // proxy: the sub-options it knows
	unknownSuboptionRcvd1 = 2  // host: it did not know the code we sent
	unknownSuboptionRcvd2 = 3  // proxy: we did not know the code it sent
	vmotionBegin          = 40 // source host: sequence
	vmotionGoahead        = 41 // proxy: sequence secret
	vmotionNotnow         = 43 // proxy: sequence
	vmotionPeer           = 44 // target host: sequence secret
	vmotionPeerOK         = 45 // proxy: sequence
	vmotionComplete       = 46 // target host: sequence
	vmotionAbort          = 48 // source host: sequence
	doProxy               = 70 // host: direction ('C' or 'S') and service URI
	willProxy             = 71 // proxy
	wontProxy             = 73 // proxy
	vmVCUUID              = 80 // host: vCenter instance UUID
	getVMVCUUID           = 81 // proxy
	vmName                = 82 // host: VM name
	getVMName             = 83 // proxy
	vmBIOSUUID            = 84 // host: SMBIOS UUID
	getVMBIOSUUID         = 85 // proxy
	vmLocationUUID        = 86 // host: location UUID
	getVMLocationUUID     = 87 // proxy
)

const (
	// secretLen is the length of the vMotion secret we issue: 64 random
	// bits, unguessable within a vMotion's few minutes.
	secretLen = 8
	// maxNameLen bounds a VM name or URI kept from a host.
	maxNameLen = 256
	// pendingKeystrokesLimit bounds the keystrokes held during a
	// vMotion: a few lines of typing, not a paste of a file.
	pendingKeystrokesLimit = 4096
)

// ourSuboptions is the KNOWN-SUBOPTIONS-2 list: every code this package
// sends or handles. VMware's description requires a proxy to support
// KNOWN-SUBOPTIONS-2 and UNKNOWN-SUBOPTION-RCVD-2 at least; listing the
// vMotion codes is what tells the host it may migrate the VM through us.
var ourSuboptions = []byte{
	knownSuboptions1, knownSuboptions2, unknownSuboptionRcvd1, unknownSuboptionRcvd2,
	vmotionBegin, vmotionGoahead, vmotionNotnow, vmotionPeer, vmotionPeerOK,
	vmotionComplete, vmotionAbort, doProxy, willProxy, wontProxy,
	vmVCUUID, getVMVCUUID, vmName, getVMName, vmBIOSUUID, getVMBIOSUUID,
	vmLocationUUID, getVMLocationUUID,
}

// identityQueries pairs each GET we may send with the answer it asks for.
// We send a GET only when the host listed it in KNOWN-SUBOPTIONS-1: the
// list is how the VMware description lets each side learn what the other
// accepts.
var identityQueries = []struct{ get, answer byte }{
	{getVMVCUUID, vmVCUUID},
	{getVMBIOSUUID, vmBIOSUUID},
	{getVMName, vmName},
	{getVMLocationUUID, vmLocationUUID},
}

// Identity is what an ESXi host told us about the VM behind a connection.
// UUIDs are in the vSphere API's form (lowercase 8-4-4-4-12), so they
// compare equal to a VM's config.instanceUuid and config.uuid.
type Identity struct {
	// InstanceUUID is vCenter's instance UUID (VM-VC-UUID), unique among
	// the VMs of a vCenter, clones included.
	InstanceUUID string
	// BIOSUUID is the SMBIOS UUID (VM-BIOS-UUID), the VM's config.uuid,
	// which the bridge's BMCs are bound by; clones may share it.
	BIOSUUID string
	// Name is the VM's name as the host last reported it.
	Name string
	// LocationUUID is the host's location UUID for the VM's files.
	LocationUUID string
}

func (id Identity) identified() bool { return id.InstanceUUID != "" || id.BIOSUUID != "" }

// conflicts reports whether o names another VM than id: a UUID both know
// and that differs. A name may change (a rename) and never conflicts.
func (id Identity) conflicts(o Identity) bool {
	differ := func(a, b string) bool { return a != "" && b != "" && a != b }
	return differ(id.InstanceUUID, o.InstanceUUID) || differ(id.BIOSUUID, o.BIOSUUID)
}

// mayJoin reports whether a host connection identified as o may join the
// console of the VM id describes, and so be sent the keystrokes typed at
// it: o must name the VM by the strongest UUID id knows, the instance UUID
// when id has one (equal: absent is not enough), else the BIOS UUID.
// VMware's vSPC description has the host answer GET-VM-VC-UUID for the VM
// it runs, so the VM's own hosts always give the instance UUID, which
// only vCenter and its hosts know; a connection that gives the BIOS UUID
// alone is not one of them, and that UUID proves nothing: clones share
// it, and the guest reads it from SMBIOS and sends it in PXE requests. A
// vMotion target joins by VMOTION-PEER's secret instead (Console.attach).
func (id Identity) mayJoin(o Identity) bool {
	switch {
	case id.conflicts(o):
		return false
	case id.InstanceUUID != "":
		return o.InstanceUUID == id.InstanceUUID
	}
	return id.BIOSUUID != "" && o.BIOSUUID == id.BIOSUUID
}

// merge fills id's empty fields from o, and takes o's name.
func (id *Identity) merge(o Identity) {
	if id.InstanceUUID == "" {
		id.InstanceUUID = o.InstanceUUID
	}
	if id.BIOSUUID == "" {
		id.BIOSUUID = o.BIOSUUID
	}
	if id.LocationUUID == "" {
		id.LocationUUID = o.LocationUUID
	}
	if o.Name != "" {
		id.Name = o.Name
	}
}

// NormalizeUUID returns s in the vSphere API's UUID form, or "" when s does
// not hold 32 hexadecimal digits. ESXi sends UUIDs as they stand in the
// .vmx file ("42 1a 2b 3c 4d 5e 6f 70-81 92 a3 b4 c5 d6 e7 f8"), in the
// same byte order as the API's config.uuid, so only the separators and
// the case change.
func NormalizeUUID(s string) string {
	var digits [32]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '-':
			continue
		case n == len(digits) || !isHex(c):
			return ""
		}
		digits[n] = lower(c)
		n++
	}
	if n != len(digits) {
		return ""
	}
	d := string(digits[:])
	return d[0:8] + "-" + d[8:12] + "-" + d[12:16] + "-" + d[16:20] + "-" + d[20:32]
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'F' {
		return c + 'a' - 'A'
	}
	return c
}

// cleanName keeps a VM name printable and bounded: it reaches logs and
// the bridge's events, and the host is not trusted to send text.
func cleanName(b []byte) string {
	if len(b) > maxNameLen {
		b = b[:maxNameLen]
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return -1
		}
		return r
	}, string(b))
}

// newSecret returns the opaque vMotion secret for a VMOTION-GOAHEAD. It
// carries no 255 byte, although appendSubneg escapes one: a host or proxy
// that forgot the RFC 855 doubling in either direction is a known cause
// of failed migrations through a concentrator.
func newSecret() []byte {
	s := make([]byte, secretLen)
	for i := range s {
		for s[i] = 0xff; s[i] == 0xff; {
			rand.Read(s[i : i+1])
		}
	}
	return s
}
