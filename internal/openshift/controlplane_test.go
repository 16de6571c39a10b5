package openshift

import (
	"strings"
	"testing"
)

// TestParseControlPlane: the flag takes a list repeated or comma-separated,
// an empty value chooses none, and a malformed glob is refused, each one
// named.
func TestParseControlPlane(t *testing.T) {
	for _, tc := range []struct {
		name     string
		flag     []string
		patterns []string // nil: none
		err      []string // substrings of the error; nil: no error
	}{
		{"default", defaultControlPlane, []string{"*-master-*"}, nil},
		{"no values", nil, nil, nil},
		{"empty value", []string{""}, nil, nil},
		{"blank values", []string{" ", " , ,"}, nil, nil},
		{"repeated", []string{"a-*", "b-?"}, []string{"a-*", "b-?"}, nil},
		{"comma-separated", []string{"a-*,b-?"}, []string{"a-*", "b-?"}, nil},
		{"both, with blanks and empties", []string{" a-* , ,b-?", "", "c"}, []string{"a-*", "b-?", "c"}, nil},
		{"character class", []string{"skinner-master-[0-2]"}, []string{"skinner-master-[0-2]"}, nil},
		{"malformed", []string{"*-master-*,skinner-[", `x\`}, nil, []string{`"skinner-["`, `"x\\"`, "syntax error in pattern"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cp, err := ParseControlPlane(tc.flag)
			if tc.err != nil {
				if err == nil {
					t.Fatalf("no error; patterns %q", cp.Patterns())
				}
				for _, w := range tc.err {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				if len(cp.Patterns()) != 0 {
					t.Errorf("patterns %q despite the error", cp.Patterns())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Patterns is what the bmh command sends: never nil, which the
			// API would read as the default.
			got := cp.Patterns()
			if got == nil || strings.Join(got, "\n") != strings.Join(tc.patterns, "\n") || len(got) != len(tc.patterns) {
				t.Errorf("Patterns() = %#v, want %q", got, tc.patterns)
			}
		})
	}
}

// TestControlPlaneMatch: a glob matches the VM name as vCenter has it or as
// its BareMetalHost is named, so that the default misses no master for its
// capitals or underscores.
func TestControlPlaneMatch(t *testing.T) {
	for _, tc := range []struct {
		flag []string
		vm   string
		want bool
	}{
		{defaultControlPlane, "skinner-master-0", true},
		{defaultControlPlane, "skinner-master-2", true},
		{defaultControlPlane, "skinner-worker-1", false},
		{defaultControlPlane, "skinner-master", false},
		{defaultControlPlane, "master-0", false},
		{defaultControlPlane, "OCP-Master-0", true},      // as ocp-master-0
		{defaultControlPlane, "ocp_master_1", true},      // as ocp-master-1
		{[]string{"OCP_Master_*"}, "OCP_Master_0", true}, // as vCenter has it
		{[]string{"OCP_Master_*"}, "ocp-master-0", false},
		{customControlPlane, "skinner-master-0", true},
		{customControlPlane, "skinner-master-2", false},
		{customControlPlane, "skinner-worker-2", true},
		{noControlPlane, "skinner-master-0", false},
		{[]string{"*"}, "dc0/vm/x", true}, // '*' stops at '/', but the BareMetalHost name has none
	} {
		if got := parseControlPlane(t, tc.flag).Match(tc.vm); got != tc.want {
			t.Errorf("--control-plane %q: Match(%q) = %v, want %v", tc.flag, tc.vm, got, tc.want)
		}
	}
}
