package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writePair writes a self-signed certificate and its key as PEM files in
// a temporary directory and returns their paths.
func writePair(t *testing.T) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test"},
		NotBefore: time.Unix(0, 0), NotAfter: time.Unix(0, 0).AddDate(200, 0, 0), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// PEM files are checked when the configuration is read, not when first
// used: the daemon used to log in to vCenter first and exit afterwards on
// a CA or certificate file that was not PEM, one failed login per restart
// with a wrong password. Each error names the file, line and key.
func TestPEMFilesValidated(t *testing.T) {
	cert, key := writePair(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badCert := filepath.Join(dir, "bad-cert.pem")
	if err := os.WriteFile(badCert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")}), 0o600); err != nil {
		t.Fatal(err)
	}
	vc := func(extra string) string {
		return strings.Replace(good, "  insecure: true", "  insecure: true\n"+extra, 1)
	}
	for _, tt := range []struct{ name, yaml, want string }{
		{"vcenter caFile not PEM", vc("  caFile: " + notPEM), "f.yaml:6: vcenter.caFile: " + notPEM + ": no PEM certificate"},
		{"vcenter caFile missing", vc("  caFile: /nonexistent/ca.pem"), "f.yaml:6: vcenter.caFile: open /nonexistent/ca.pem"},
		{"vcenter caFile bad certificate", vc("  caFile: " + badCert), "f.yaml:6: vcenter.caFile: " + badCert + ": certificate 1:"},
		{"media caFile not PEM", good + "media:\n  caFile: " + notPEM + "\n", "f.yaml:16: media.caFile: " + notPEM + ": no PEM certificate"},
		{"media caFile missing", good + "media:\n  caFile: /nonexistent/ca.pem\n", "f.yaml:16: media.caFile: open /nonexistent/ca.pem"},
		{"redfish cert not PEM", good + "redfish:\n  certFile: " + notPEM + "\n  keyFile: " + key + "\n", "f.yaml:16: redfish.certFile: " + notPEM + " with keyFile " + key + ": not a usable PEM"},
		{"redfish key not PEM", good + "redfish:\n  certFile: " + cert + "\n  keyFile: " + notPEM + "\n", "f.yaml:16: redfish.certFile: " + cert + " with keyFile " + notPEM + ": not a usable PEM"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("f.yaml", []byte(tt.yaml), Env{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
	for _, ok := range []string{
		vc("  caFile: " + cert),
		good + "media:\n  caFile: " + cert + "\n",
		good + "redfish:\n  certFile: " + cert + "\n  keyFile: " + key + "\n",
	} {
		if _, err := Parse("f.yaml", []byte(ok), Env{}); err != nil {
			t.Errorf("valid PEM files refused: %v", err)
		}
	}
}

// A zero lockout window counted nothing and a zero lockout duration
// blocked for no time: either turned the lockout off without a word while
// lockoutFailures said it was on. Both are refused, naming file, line and
// key; lockoutFailures: 0 is how to turn the lockout off.
func TestLockoutZeroRefused(t *testing.T) {
	for _, tt := range []struct{ yaml, want string }{
		{"ipmi:\n  lockoutWindow: 0s\n", "f.yaml:16: ipmi.lockoutWindow: must be more than 0"},
		{"ipmi:\n  lockoutDuration: 0s\n", "f.yaml:16: ipmi.lockoutDuration: must be more than 0"},
		{"ipmi:\n  lockoutFailures: 3\n  lockoutDuration: 0s\n", "f.yaml:17: ipmi.lockoutDuration: must be more than 0"},
		// Both zero: the window is named, whatever the order in the file.
		{"ipmi:\n  lockoutDuration: 0s\n  lockoutWindow: 0s\n", "f.yaml:17: ipmi.lockoutWindow: must be more than 0"},
	} {
		_, err := Parse("f.yaml", []byte(good+tt.yaml), Env{})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: err = %v, want %q", tt.yaml, err, tt.want)
		}
	}
	if _, err := Parse("f.yaml", []byte(good+"ipmi:\n  lockoutFailures: 0\n  lockoutWindow: 0s\n  lockoutDuration: 0s\n"), Env{}); err != nil {
		t.Errorf("lockout off with zero durations: %v", err)
	}
}
