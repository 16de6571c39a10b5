package daemon

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// loginCounter stands between the daemon and the simulator and counts the
// SOAP Login calls that reach vCenter, across daemon restarts (the
// daemon's own request counter starts from zero at each one).
type loginCounter struct {
	n      atomic.Int64
	url    string // the SDK URL through the counter
	caFile string // its certificate, PEM
}

func countLogins(t *testing.T, sim *vsphere.Simulator) *loginCounter {
	t.Helper()
	lc := &loginCounter{}
	target := *sim.URL
	target.Path = ""
	proxy := httputil.NewSingleHostReverseProxy(&target)
	proxy.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the test's own simulator
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte("<Login ")) || bytes.Contains(body, []byte("<Login>")) {
			lc.n.Add(1)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	lc.url = srv.URL + sim.URL.Path
	lc.caFile = filepath.Join(t.TempDir(), "proxy-ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(lc.caFile, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	return lc
}

// wrongPasswordConfig starts a simulator with one VM behind a login
// counter and writes, in a directory of its own, a configuration that logs
// in to it through the counter with a wrong password, then extra; it
// returns the counter, the directory and the configuration's path.
func wrongPasswordConfig(t *testing.T, extra string) (*loginCounter, string, string) {
	t.Helper()
	lc := countLogins(t, vcsimtest.Start(t, 1))
	dir := t.TempDir()
	cfg := templateConfig(dir, lc.url, "wrong-password", lc.caFile, clienttest.FreeUDPPort(t), clienttest.FreeUDPPort(t), extra)
	return lc, dir, writeConfig(t, dir, cfg)
}

// With a wrong vCenter password, a daemon restarted again and again (as
// systemd does, every 2 s) sends at most vcenter.loginFailures logins per
// vcenter.loginWindow in all: the failed logins are kept in the state
// file. The cap used to be in memory only, so each restart sent one more
// and five restarts locked the account.
func TestRestartsKeepLoginCap(t *testing.T) {
	t.Parallel()
	lc, dir, cfgPath := wrongPasswordConfig(t, "")
	const restarts = 5
	for i := range restarts {
		// The daemon is ready once the first login attempt has ended (or
		// was postponed by the cap).
		d := startDaemon(t, cfgPath, filepath.Join(dir, "run", "api.sock"))
		d.stop(t)
		t.Logf("start %d: %d logins reached vCenter so far", i+1, lc.n.Load())
	}
	if n := lc.n.Load(); n == 0 || n > config.DefaultLoginFailures {
		t.Fatalf("%d starts with a wrong password sent %d logins; want 1 to %d (vcenter.loginFailures per loginWindow)", restarts, n, config.DefaultLoginFailures)
	}
	st, err := os.Stat(filepath.Join(dir, "state", "state.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("state file holding the failed logins: %v, mode %v", err, st.Mode())
	}
}

// A daemon that cannot start (here a media.caFile that is not PEM) fails
// before logging in to vCenter: it used to log in first and exit after,
// one failed login per restart with a wrong password.
func TestNoLoginBeforeFatalSetupError(t *testing.T) {
	t.Parallel()
	ca := filepath.Join(t.TempDir(), "media-ca.pem")
	if err := os.WriteFile(ca, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lc, dir, cfgPath := wrongPasswordConfig(t, "media:\n  caFile: "+ca+"\n")
	for range 3 {
		err := Run(context.Background(), Options{Config: cfgPath, Socket: filepath.Join(dir, "run", "api.sock"),
			Log: slog.New(slog.DiscardHandler), Stdout: io.Discard})
		if err == nil || !strings.Contains(err.Error(), "media.caFile") || !strings.Contains(err.Error(), "no PEM certificate") {
			t.Fatalf("start with a media.caFile that is not PEM: %v", err)
		}
	}
	if n := lc.n.Load(); n != 0 {
		t.Fatalf("%d logins sent by daemons that then exited", n)
	}
}
