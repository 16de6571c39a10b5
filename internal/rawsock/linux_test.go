//go:build linux && !386 && !s390x

package rawsock

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

func isLinux() bool { return true }

// Addresses survive the trip through a sockaddr of either family: an
// IPv4 address on an IPv6 socket goes v4-mapped, a link-local zone
// becomes the scope ID, and IPv6 cannot go out of an IPv4 socket.
func TestSockaddr(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, out string
		inet6   bool
	}{
		{"192.0.2.1:623", "192.0.2.1:623", false},
		{"[::ffff:192.0.2.1]:623", "192.0.2.1:623", false},
		{"192.0.2.1:623", "[::ffff:192.0.2.1]:623", true},
		{"[2001:db8::1]:65535", "[2001:db8::1]:65535", true},
		{"[fe80::1%7]:1", "[fe80::1%7]:1", true},
		{"[2001:db8::1]:623", "", false},
	} {
		var sa unix.RawSockaddrAny
		n := encodeSockaddr(&sa, netip.MustParseAddrPort(tc.in), tc.inet6)
		if tc.out == "" {
			if n != 0 {
				t.Errorf("%s on an IPv4 socket: encoded", tc.in)
			}
			continue
		}
		if got := decodeSockaddr(&sa); got.String() != tc.out {
			t.Errorf("%s (inet6 %v): %s, want %s", tc.in, tc.inet6, got, tc.out)
		}
	}
}
