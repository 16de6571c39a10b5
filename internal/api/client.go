package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"syscall"
	"time"
)

// Client talks to a daemon's management socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the socket at path.
func NewClient(path string) *Client {
	c := &Client{socket: path}
	c.http = &http.Client{
		// check opens a session to every BMC; a thousand take a while.
		Timeout: 10 * time.Minute,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return c.dial(ctx)
		}},
	}
	return c
}

// dial connects to the daemon's socket, saying so when no daemon listens.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", c.socket)
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
		return nil, noDaemon{c.socket}
	}
	return conn, err
}

// noDaemon is dial's error when nothing listens on the socket.
type noDaemon struct{ socket string }

func (e noDaemon) Error() string {
	return "no daemon at " + e.socket + " (is `ipmi-vmware-bridge serve` running? --socket names another)"
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://daemon"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if nd := (noDaemon{}); errors.As(err, &nd) {
			return nd // without the URL the HTTP client adds
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return responseError(resp)
	}
	if w, ok := out.(io.Writer); ok {
		_, err = io.Copy(w, resp.Body)
		return err
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// BMCs lists the BMCs.
func (c *Client) BMCs(ctx context.Context) ([]BMC, error) {
	var out []BMC
	return out, c.do(ctx, http.MethodGet, "/v1/bmcs", nil, &out)
}

// BMC shows one BMC by address or VM name.
func (c *Client) BMC(ctx context.Context, id string) (BMC, error) {
	var out BMC
	return out, c.do(ctx, http.MethodGet, "/v1/bmcs/"+url.PathEscape(id), nil, &out)
}

// Add adds a BMC.
func (c *Client) Add(ctx context.Context, a Add) (BMC, error) {
	var out BMC
	return out, c.do(ctx, http.MethodPost, "/v1/bmcs", a, &out)
}

// AddAll adds a BMC per matching VM.
func (c *Client) AddAll(ctx context.Context, a AddAll) ([]BMC, error) {
	var out []BMC
	return out, c.do(ctx, http.MethodPost, "/v1/bmcs:all", a, &out)
}

// Remove removes a runtime BMC.
func (c *Client) Remove(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/v1/bmcs/"+url.PathEscape(id), nil, nil)
}

// Stop stops a BMC.
func (c *Client) Stop(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/v1/bmcs/"+url.PathEscape(id)+"/stop", nil, nil)
}

// Start starts a stopped BMC.
func (c *Client) Start(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/v1/bmcs/"+url.PathEscape(id)+"/start", nil, nil)
}

// VMs lists the vCenters' VMs that q selects.
func (c *Client) VMs(ctx context.Context, sel VMQuery) ([]VM, error) {
	var out []VM
	q := url.Values{"filter": {sel.Filter}, "folder": {sel.Folder}, "tag": {sel.Tag}, "vcenter": {sel.VCenter}}
	return out, c.do(ctx, http.MethodGet, "/v1/vms?"+q.Encode(), nil, &out)
}

// Check opens a session to every BMC.
func (c *Client) Check(ctx context.Context) ([]Check, error) {
	var out []Check
	return out, c.do(ctx, http.MethodPost, "/v1/check", nil, &out)
}

// BMH writes the manifests to w.
func (c *Client) BMH(ctx context.Context, req BMH, w io.Writer) error {
	return c.do(ctx, http.MethodPost, "/v1/bmh", req, w)
}

// Reload makes the daemon re-read its configuration.
func (c *Client) Reload(ctx context.Context) error {
	return c.do(ctx, http.MethodPost, "/v1/reload", nil, nil)
}

// responseError is the error a failed request's response carries: the
// daemon's message when it sent one.
func responseError(resp *http.Response) error {
	var e Error
	if json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&e) == nil && e.Error != "" {
		return errors.New(e.Error)
	}
	return fmt.Errorf("daemon answered %s", resp.Status)
}
