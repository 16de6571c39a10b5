package openshift

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"
)

// BareMetalHosts writes a multi-document YAML stream for `oc apply -f` (or
// `oc create -f`): for each host, in input order, a v1 Secret named
// "<name>-bmc-secret" holding the BMC username and password, then the
// metal3.io/v1alpha1 BareMetalHost that refers to it, both in
// opts.Namespace.
//
// <name> is the VM name made a valid Kubernetes object name (a DNS-1123
// subdomain): ASCII letters lower-cased, any other character outside
// [a-z0-9.-] replaced by '-', leading and trailing '-' and empty labels
// trimmed, cut to 242 characters so that the Secret's name fits in 253 too.
// A name with nothing left, or two hosts with the same sanitised name, is an
// error.
//
// A host with ControlPlane set gets online: true, externallyProvisioned:
// true and automatedCleaningMode: disabled (see Host.ControlPlane).
//
// Invalid input writes nothing: the error names every host at fault, by index
// and name, and never contains a password.
func BareMetalHosts(w io.Writer, hosts []Host, opts Options) error {
	hs, errs := resolve(hosts, opts)
	ns, err := namespace(opts)
	if err != nil {
		errs = append([]error{err}, errs...)
	}
	if len(errs) > 0 {
		return wrap(errs)
	}
	docs := make([]*yaml.Node, 0, 2*len(hs))
	for i := range hs {
		h := &hs[i]
		spec := mapping("online", boolean(h.online || h.controlPlane))
		if h.controlPlane {
			// Right after online, where a reader checking what Metal3 will
			// do to the host looks.
			spec.Content = append(spec.Content, mapping(
				"externallyProvisioned", boolean(true),
				"automatedCleaningMode", str("disabled"),
			).Content...)
		}
		spec.Content = append(spec.Content, mapping(
			"bootMACAddress", str(h.mac),
			"bootMode", str(h.bootMode),
			"bmc", bmc(h, "credentialsName", str(h.secretName())),
		).Content...)
		docs = append(docs,
			mapping(
				"apiVersion", str("v1"),
				"kind", str("Secret"),
				"metadata", metadata(h.secretName(), ns),
				"type", str("Opaque"),
				"data", mapping(
					"username", str(base64.StdEncoding.EncodeToString([]byte(h.username))),
					"password", str(base64.StdEncoding.EncodeToString([]byte(h.password))),
				),
			),
			mapping(
				"apiVersion", str("metal3.io/v1alpha1"),
				"kind", str("BareMetalHost"),
				"metadata", metadata(h.name, ns),
				"spec", spec,
			),
		)
	}
	return encode(w, docs...)
}

// InstallConfigHosts writes the hosts of install-config.yaml's
// platform.baremetal section as one YAML document, nested in full:
//
//	platform:
//	  baremetal:
//	    hosts:
//	      - name: ...
//
// The full nesting makes the output valid YAML on its own, so it can be
// checked and merged into install-config.yaml with a YAML tool rather than
// pasted at the right indentation by hand; to paste it under an existing
// `baremetal:`, take the lines from `hosts:` on.
//
// Each host has its name (sanitised as for BareMetalHosts, which is the name
// the installer gives its BareMetalHost), role, bmc (address, username,
// password and, for Redfish, disableCertificateVerification),
// bootMACAddress and bootMode, the BareMetalHost's own (UEFISecureBoot
// included), so that the installer provisions a host as bmh describes it to
// a running cluster. The credentials are in clear text because
// install-config.yaml carries them so. opts.Namespace is not used.
func InstallConfigHosts(w io.Writer, hosts []Host, opts Options) error {
	hs, errs := resolve(hosts, opts)
	if len(errs) > 0 {
		return wrap(errs)
	}
	list := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for i := range hs {
		h := &hs[i]
		list.Content = append(list.Content, mapping(
			"name", str(h.name),
			"role", str(h.role),
			"bmc", bmc(h, "username", str(h.username), "password", str(h.password)),
			"bootMACAddress", str(h.mac),
			"bootMode", str(h.bootMode),
		))
	}
	return encode(w, mapping("platform", mapping("baremetal", mapping("hosts", list))))
}

// bmc is a host's bmc mapping: the address, then the credentials as given,
// then, for Redfish without certificate verification,
// disableCertificateVerification (ipmitool has no certificate to verify).
func bmc(h *host, credentials ...any) *yaml.Node {
	m := mapping("address", str(h.address))
	m.Content = append(m.Content, mapping(credentials...).Content...)
	if h.insecure {
		m.Content = append(m.Content, str("disableCertificateVerification"), boolean(true))
	}
	return m
}

func metadata(name, namespace string) *yaml.Node {
	return mapping("name", str(name), "namespace", str(namespace))
}

// encode writes docs as a YAML stream in one Write, so that a failed
// encoding leaves w untouched.
func encode(w io.Writer, docs ...*yaml.Node) error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	for _, d := range docs {
		if err := enc.Encode(d); err != nil {
			return fmt.Errorf("openshift: %w", err)
		}
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("openshift: %w", err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("openshift: %w", err)
	}
	return nil
}

// mapping builds a mapping node from alternating keys (string) and values
// (*yaml.Node), keeping their order: a Go map or struct would not let the
// output follow the order Kubernetes documentation uses.
func mapping(kv ...any) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	for i := 0; i < len(kv); i += 2 {
		m.Content = append(m.Content, str(kv[i].(string)), kv[i+1].(*yaml.Node))
	}
	return m
}

func boolean(b bool) *yaml.Node {
	v := "false"
	if b {
		v = "true"
	}
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: v}
}

// str is a string scalar, double-quoted unless it is plain-safe.
func str(s string) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if !plainSafe(s) {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

// plainSafe reports whether s reads back as the same string when written
// unquoted, for YAML 1.2 readers (yaml.v3, the installer) and YAML 1.1 ones
// (PyYAML, older tooling) alike. yaml.v3 quotes only what YAML 1.2 would
// misread, so a MAC such as 11:22:33:44:55:66 (a YAML 1.1 base-60 integer)
// or a password "on" (a YAML 1.1 boolean) would go out plain. Rather than
// list every YAML 1.1 pattern, only a letter followed by letters, digits and
// "-._/" is left plain, which excludes every number, timestamp, base-60 value
// and indicator; of such words YAML 1.1 misreads only the booleans and nulls
// below.
func plainSafe(s string) bool {
	if s == "" || !isLetter(s[0]) || yaml11Words[s] {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !('0' <= c && c <= '9') && c != '-' && c != '.' && c != '_' && c != '/' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// yaml11Words are the words YAML 1.1 resolves to booleans or null
// (yaml.org/type/bool.html, yaml.org/type/null.html).
var yaml11Words = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true,
	"n": true, "N": true, "no": true, "No": true, "NO": true,
	"true": true, "True": true, "TRUE": true,
	"false": true, "False": true, "FALSE": true,
	"on": true, "On": true, "ON": true,
	"off": true, "Off": true, "OFF": true,
	"null": true, "Null": true, "NULL": true,
}
