package config

import (
	"fmt"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// singleVCenter prefixes the keys of the single vcenter section.
const singleVCenter = "vcenter."

// vcenterNamePattern is what a vCenter's name may hold: it appears in
// Redfish system ids (which Ironic URL-quotes, so only unreserved URL
// characters), metric labels and command lines.
var vcenterNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// vcenters reads the vcenters list or the single vcenter section (a list
// of one, named DefaultVCenterName unless it says otherwise); one of the
// two, not both. envPassword serves the single section only: one
// variable cannot hold several vCenters' passwords.
func (p *parser) vcenters(root *yaml.Node, fields map[string]*yaml.Node, envPassword string) ([]VCenter, error) {
	one, hasOne := fields["vcenter"]
	list, hasList := fields["vcenters"]
	switch {
	case hasOne && hasList:
		return nil, p.err(list, "vcenters", "give vcenter (one) or vcenters (a list), not both")
	case hasOne:
		vc, err := p.vcenter(one, singleVCenter, envPassword)
		return []VCenter{vc}, err
	case !hasList:
		return nil, p.err(root, "vcenter", "missing (or vcenters, a list)")
	case list.Kind != yaml.SequenceNode || len(list.Content) == 0:
		return nil, p.err(list, "vcenters", "must be a list of vCenters, each with a name")
	}
	var out []VCenter
	seen := map[string]string{}
	for i, n := range list.Content {
		pre := fmt.Sprintf("vcenters[%d].", i)
		if n.Kind == yaml.MappingNode && valueOf(n, "name") == n {
			return nil, p.err(n, pre+"name", "missing: each vCenter of the list has a name")
		}
		vc, err := p.vcenter(n, pre, "")
		if err != nil {
			return nil, err
		}
		if where, dup := seen[vc.Name]; dup {
			return nil, p.err(valueOf(n, "name"), pre+"name", fmt.Sprintf("%q is already the name of the vCenter at %s", vc.Name, where))
		}
		seen[vc.Name] = fmt.Sprintf("%s:%d", p.file, n.Line)
		out = append(out, vc)
	}
	return out, nil
}

// vcenterName reads a vCenter's name, DefaultVCenterName when absent.
func (p *parser) vcenterName(n *yaml.Node, f map[string]*yaml.Node, pre string) (string, error) {
	name, err := p.str(f, pre, "name")
	if err != nil || name == "" {
		return DefaultVCenterName, err
	}
	if !vcenterNamePattern.MatchString(name) {
		return "", p.err(f["name"], pre+"name", "must be 1 to 63 letters, digits, '-', '.' or '_', starting with a letter or digit")
	}
	return name, nil
}

// vcenterOf checks *name, the vcenter of the entry n (key is its
// vcenter's, e.g. bmcs[2].vcenter), against the vCenters vcs, and sets it
// to the only vCenter's name when it names none.
func (p *parser) vcenterOf(n *yaml.Node, key string, name *string, vcs []VCenter) error {
	var names []string
	known := false
	for _, vc := range vcs {
		names = append(names, vc.Name)
		known = known || vc.Name == *name
	}
	switch {
	case *name == "" && len(names) == 1:
		*name = names[0]
	case *name == "":
		return p.err(n, key, "missing: with several vCenters each entry names its own (one of "+strings.Join(names, ", ")+")")
	case !known:
		return p.err(valueOf(n, "vcenter"), key, fmt.Sprintf("%q is not a configured vCenter (%s)", *name, strings.Join(names, ", ")))
	}
	return nil
}
