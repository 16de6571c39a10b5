package redfish

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Files of the self-signed certificate in the directory TLSConfig is given.
const (
	SelfSignedCertFile = "redfish-cert.pem"
	SelfSignedKeyFile  = "redfish-key.pem"
)

// selfSignedValidity is the lifetime of a generated certificate. Clients
// of a self-signed BMC certificate either skip verification (Ironic's
// redfish_verify_ca=false) or pin this file, so a long life spares them a
// change; it is regenerated once expired.
const selfSignedValidity = 10 * 365 * 24 * time.Hour

// TLSConfig returns the server TLS configuration of the Redfish service.
// With certFile and keyFile it serves that key pair. Without both, it
// serves a self-signed certificate (ECDSA P-256) kept in dir: generated on
// first use, reused on later starts, and generated anew when it has
// expired or does not name every one of hosts. Its subject alternative
// names are hosts (IP addresses and names; an unspecified address such as
// 0.0.0.0 stands for the machine's host name), localhost and 127.0.0.1.
func TLSConfig(certFile, keyFile, dir string, hosts []string) (*tls.Config, error) {
	var cert tls.Certificate
	var err error
	switch {
	case certFile != "" && keyFile != "":
		cert, err = tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("redfish TLS key pair %s, %s: %w", certFile, keyFile, err)
		}
	case certFile != "" || keyFile != "":
		return nil, errors.New("redfish TLS: a certificate file needs a key file and the reverse")
	case dir == "":
		return nil, errors.New("redfish TLS: no certificate files and no directory for a self-signed certificate")
	default:
		cert, err = selfSigned(dir, certNames(hosts), time.Now())
		if err != nil {
			return nil, err
		}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// certNames returns the names a self-signed certificate covers, the
// listen hosts first.
func certNames(hosts []string) []string {
	var names []string
	for _, h := range append(slices.Clone(hosts), "localhost", "127.0.0.1") {
		if host, _, err := net.SplitHostPort(h); err == nil {
			h = host
		}
		if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
			// Listening everywhere: clients come by the host's name.
			hn, err := os.Hostname()
			if err != nil {
				continue
			}
			h = hn
		}
		if !slices.Contains(names, h) {
			names = append(names, h)
		}
	}
	return names
}

// selfSigned loads the certificate in dir if it is valid at now and names
// every one of names, and otherwise generates one and writes it there.
func selfSigned(dir string, names []string, now time.Time) (tls.Certificate, error) {
	certPath, keyPath := filepath.Join(dir, SelfSignedCertFile), filepath.Join(dir, SelfSignedKeyFile)
	if cert, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil && covers(cert.Leaf, names, now) {
		return cert, nil
	}
	certPEM, keyPEM, err := generateCert(names, now)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("redfish TLS: generate certificate: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("redfish TLS: %w", err)
	}
	// Key first: a crash between the two leaves a pair that does not
	// load, which the next start replaces.
	if err := writeFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("redfish TLS: %w", err)
	}
	if err := writeFileAtomic(certPath, certPEM, 0o644); err != nil {
		return tls.Certificate{}, fmt.Errorf("redfish TLS: %w", err)
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// covers reports whether c is valid at now and names every one of names.
func covers(c *x509.Certificate, names []string, now time.Time) bool {
	if c == nil || now.Before(c.NotBefore) || !now.Before(c.NotAfter) {
		return false
	}
	for _, n := range names {
		if c.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

func generateCert(names []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: names[0], Organization: []string{"ipmi-vmware-bridge"}},
		NotBefore:    now.Add(-time.Hour), // tolerate a client clock slightly behind
		NotAfter:     now.Add(selfSignedValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		// A server certificate (CA:FALSE). A client that verifies pins
		// this file as its CA bundle (Ironic's redfish_verify_ca=PATH);
		// OpenSSL and Go accept a self-signed leaf as its own anchor.
		BasicConstraintsValid: true,
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// writeFileAtomic replaces path with data: a reader sees the old file or
// the new one, never a part. The file has mode perm from its creation on.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after a successful rename, nothing to remove
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
