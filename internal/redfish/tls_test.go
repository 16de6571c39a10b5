package redfish

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestSelfSignedCertificate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	tc, err := TLSConfig("", "", dir, []string{"192.0.2.10", "bmc.example"})
	if err != nil {
		t.Fatal(err)
	}
	leaf := tc.Certificates[0].Leaf
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key %T", leaf.PublicKey)
	}
	for _, h := range []string{"192.0.2.10", "bmc.example", "localhost", "127.0.0.1"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("%s: %v", h, err)
		}
	}
	if tc.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion %x", tc.MinVersion)
	}
	key, err := os.Stat(filepath.Join(dir, SelfSignedKeyFile))
	if err != nil || key.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", key.Mode(), err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("files left behind: %v", entries)
	}

	// The next start reuses it.
	certPEM, _ := os.ReadFile(filepath.Join(dir, SelfSignedCertFile))
	tc2, err := TLSConfig("", "", dir, []string{"bmc.example"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(tc2.Certificates[0].Certificate[0], tc.Certificates[0].Certificate[0]) {
		t.Error("certificate regenerated although it covers the hosts")
	}

	// A new listen address gets a certificate that names it.
	tc3, err := TLSConfig("", "", dir, []string{"198.51.100.7"})
	if err != nil {
		t.Fatal(err)
	}
	if err := tc3.Certificates[0].Leaf.VerifyHostname("198.51.100.7"); err != nil {
		t.Error(err)
	}
	if certPEM2, _ := os.ReadFile(filepath.Join(dir, SelfSignedCertFile)); bytes.Equal(certPEM, certPEM2) {
		t.Error("certificate file not replaced")
	}

	// An expired one is replaced.
	later := time.Now().Add(selfSignedValidity + time.Hour)
	c, err := selfSigned(dir, []string{"localhost"}, later)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Leaf.NotAfter.After(later) {
		t.Errorf("NotAfter %v", c.Leaf.NotAfter)
	}
}

func TestUnspecifiedHostMeansHostname(t *testing.T) {
	hn, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	want := []string{hn}
	for _, n := range []string{"localhost", "127.0.0.1"} {
		if n != hn {
			want = append(want, n)
		}
	}
	if names := certNames([]string{"0.0.0.0:8443", "::", ""}); !slices.Equal(names, want) {
		t.Errorf("names %v, want %v", names, want)
	}
}

func TestTLSConfigFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := TLSConfig("", "", dir, nil); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, SelfSignedCertFile), filepath.Join(dir, SelfSignedKeyFile)
	tc, err := TLSConfig(cert, key, "", nil)
	if err != nil || len(tc.Certificates) != 1 {
		t.Fatalf("%v", err)
	}
	for name, args := range map[string][3]string{
		"cert without key": {cert, "", dir},
		"key without cert": {"", key, dir},
		"nothing":          {"", "", ""},
		"missing files":    {cert + ".x", key, ""},
	} {
		if _, err := TLSConfig(args[0], args[1], args[2], nil); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// httpsServer is an env's Server serving HTTPS on a loopback port, with a
// self-signed certificate for 127.0.0.1 in a directory of the test's.
type httpsServer struct {
	addr   string // host:port
	cert   string // the certificate's file, for clients that verify it
	cancel context.CancelFunc
	done   chan error // what ServeTLS returned
}

// serveTLS serves e over HTTPS until stop.
func serveTLS(t *testing.T, e *env) *httpsServer {
	t.Helper()
	dir := t.TempDir()
	tc, err := TLSConfig("", "", dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &httpsServer{addr: ln.Addr().String(), cert: filepath.Join(dir, SelfSignedCertFile), cancel: cancel, done: make(chan error, 1)}
	go func() { s.done <- e.srv.ServeTLS(ctx, ln, tc) }()
	return s
}

// stop ends the server and returns what ServeTLS returned: nil after a
// graceful shutdown.
func (s *httpsServer) stop() error {
	s.cancel()
	return <-s.done
}

// TestServeTLS serves over HTTPS on a loopback port with the self-signed
// certificate, verified by a client that trusts the file, and shuts down
// when the context ends.
func TestServeTLS(t *testing.T) {
	s := serveTLS(t, newEnv(t))
	pool := x509.NewCertPool()
	pemBytes, _ := os.ReadFile(s.cert)
	pool.AppendCertsFromPEM(pemBytes)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + s.addr + "/redfish/v1/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("OData-Version") != "4.0" {
		t.Errorf("%d %v", resp.StatusCode, resp.Header)
	}
	client.CloseIdleConnections()
	s.cancel()
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("ServeTLS: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ServeTLS did not return")
	}
}
