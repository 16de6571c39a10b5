package openshift

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// DefaultControlPlane chooses the control plane when the operator names
// none: the CLUSTER-master-N naming OpenShift clusters use, and the seed's
// skinner-master-0..2 with it.
const DefaultControlPlane = "*-master-*"

// ControlPlane chooses, by VM name, the hosts that run a cluster's control
// plane. The zero value chooses none.
//
// They matter because BareMetalHosts are applied to a cluster that is
// running: Metal3 inspects a BareMetalHost it did not provision (it boots
// it into a ramdisk, a reboot), then cleans and provisions it when asked,
// and done to a control-plane VM each takes a master down. See
// Host.ControlPlane for what their BareMetalHosts get instead.
type ControlPlane struct {
	patterns []string
}

// ParseControlPlane reads the values of a repeatable --control-plane flag,
// on the command line and again in the daemon, which takes the same list in
// its API so that the rule has one home whoever asks. Each value is one
// glob or several separated by commas, so the flag takes a list either
// way; blanks around a glob are dropped and empty globs ignored, so that an
// empty value (--control-plane "") chooses none. The globs are
// path.Match's, as --filter's are.
//
// A malformed glob is an error rather than a glob that matches nothing:
// the master it was meant for would be inspected, and so rebooted.
func ParseControlPlane(values []string) (ControlPlane, error) {
	var cp ControlPlane
	var errs []error
	for _, v := range values {
		for _, p := range strings.Split(v, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			if _, err := path.Match(p, ""); err != nil {
				errs = append(errs, fmt.Errorf("pattern %q: %w", p, err))
				continue
			}
			cp.patterns = append(cp.patterns, p)
		}
	}
	if len(errs) > 0 {
		return ControlPlane{}, errors.Join(errs...)
	}
	return cp, nil
}

// Patterns returns the globs, one per element, commas split and blanks
// dropped: what a client sends the daemon, which parses them again. The
// slice is never nil, because the API reads an absent list as "the
// default" and an empty one as "none".
func (cp ControlPlane) Patterns() []string { return append([]string{}, cp.patterns...) }

// Match reports whether a glob matches the VM's name, as vCenter has it or
// as its BareMetalHost is named (lower-cased, see BareMetalHosts). Both are
// tried because the two mistakes are not alike: a master taken for a worker
// is inspected, so rebooted, while a worker taken for a master is only left
// for an operator to hand to Metal3. So the default *-master-* also takes
// OCP-Master-0, whose BareMetalHost is ocp-master-0.
func (cp ControlPlane) Match(vm string) bool {
	name := kubeName(vm)
	for _, p := range cp.patterns {
		// ParseControlPlane checked every pattern, so Match cannot fail.
		if ok, _ := path.Match(p, vm); ok {
			return true
		}
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}
