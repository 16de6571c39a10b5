package daemon

import (
	"fmt"
	"net"
	"os"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
)

// listeners are the daemon's stream sockets: the management API, metrics,
// Redfish and the console concentrator. They are all bound before the daemon talks to vCenter or
// starts a BMC, so that a port that is taken (8000 is a common one) stops
// the start at once with a message naming the setting and the flag to
// change, rather than after the BMCs began to serve.
type listeners struct {
	socket                         string
	api, metrics, redfish, console net.Listener // all but api nil when turned off
}

// bind binds every listener, or none.
func (d *Daemon) bind() (*listeners, error) {
	ls := &listeners{socket: d.opts.Socket}
	if ls.socket == "" {
		ls.socket = api.DefaultSocket()
	}
	var err error
	if ls.api, err = api.Listen(ls.socket); err != nil {
		return nil, fmt.Errorf("%w (choose another path with --socket)", err)
	}
	if ls.metrics, err = listen(d.metricsAddress(), "metrics", "metricsAddress", "--metrics-address"); err != nil {
		ls.close()
		return nil, err
	}
	if ls.redfish, err = listen(d.redfishAddress(), "Redfish", "redfish.address", "--redfish-address"); err != nil {
		ls.close()
		return nil, err
	}
	if ls.console, err = listen(d.consoleConfig().Address, "console", "console.address", "--console-address"); err != nil {
		ls.close()
		return nil, err
	}
	return ls, nil
}

// listen binds addr, or nothing when addr is empty (turned off).
func listen(addr, what, key, flag string) (net.Listener, error) {
	if addr == "" {
		return nil, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: set %s in the configuration or %s to another address, or turn %s off with %s: \"\" (%s -)",
			what, err, key, flag, what, key, flag)
	}
	return l, nil
}

// close releases every listener and the socket file.
func (ls *listeners) close() {
	for _, l := range []net.Listener{ls.api, ls.metrics, ls.redfish, ls.console} {
		if l != nil {
			_ = l.Close()
		}
	}
	if ls.api != nil {
		_ = os.Remove(ls.socket)
	}
}
