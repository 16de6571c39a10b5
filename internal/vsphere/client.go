// Package vsphere owns everything that speaks to vCenter through govmomi: the
// connection, finding VMs, the machine.Machine implementation over a VM, and
// the embedded vCenter simulator that the bridge runs by default.
package vsphere

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/vmware/govmomi/session"
	"github.com/vmware/govmomi/session/keepalive"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/soap"
)

// Options says how to reach and log in to a vCenter.
type Options struct {
	// URL is the SDK endpoint, e.g. https://vcenter.example.com/sdk. It must
	// not carry credentials.
	URL      string
	Username string
	Password string
	// Insecure skips TLS verification.
	Insecure bool
	// CAFile, when set, is a PEM bundle of CAs to trust instead of the system's.
	CAFile string
}

// keepAliveIdle is how long a session may sit idle before a keep-alive call;
// vCenter drops idle sessions after 30 minutes by default.
const keepAliveIdle = 5 * time.Minute

// Client is a logged-in vCenter connection.
type Client struct {
	vim *vim25.Client
	mgr *session.Manager
}

// Connect logs in to vCenter. Errors never carry the password.
func Connect(ctx context.Context, o Options) (*Client, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return nil, fmt.Errorf("vcenter url: %w", err)
	}
	if u.User != nil {
		return nil, errors.New("vcenter url: must not contain credentials; use username and password")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("vcenter url %q: scheme must be https", o.URL)
	}
	sc := soap.NewClient(u, o.Insecure)
	if o.CAFile != "" {
		if err := sc.SetRootCAs(o.CAFile); err != nil {
			return nil, fmt.Errorf("vcenter caFile: %w", err)
		}
	}
	vc, err := vim25.NewClient(ctx, sc)
	if err != nil {
		return nil, fmt.Errorf("vcenter %s: %w", u.Redacted(), err)
	}
	vc.RoundTripper = keepalive.NewHandlerSOAP(vc.RoundTripper, keepAliveIdle, nil)
	mgr := session.NewManager(vc)
	if err := mgr.Login(ctx, url.UserPassword(o.Username, o.Password)); err != nil {
		return nil, fmt.Errorf("vcenter %s: login as %q: %w", u.Redacted(), o.Username, err)
	}
	return &Client{vim: vc, mgr: mgr}, nil
}

// Vim returns the underlying govmomi client.
func (c *Client) Vim() *vim25.Client { return c.vim }

// Close logs out.
func (c *Client) Close(ctx context.Context) error {
	return c.mgr.Logout(ctx)
}
