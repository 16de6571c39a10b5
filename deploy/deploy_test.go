package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
)

// The paths every artifact must agree on.
const (
	binaryPath   = "/usr/local/bin/ipmi-vmware-bridge"
	configPath   = "/etc/ipmi-vmware-bridge/bridge.yaml"
	stateDir     = "/var/lib/ipmi-vmware-bridge"
	runtimeDir   = "/run/ipmi-vmware-bridge"
	metricsPort  = 9623
	unitFile     = "systemd/ipmi-vmware-bridge.service"
	exampleFile  = "systemd/bridge.yaml.example"
	containerDir = "container"
	k8sDir       = "kubernetes"
)

// ---------------------------------------------------------------- Kubernetes

// manifest is one YAML document under kubernetes/.
type manifest struct {
	file string
	node *yaml.Node
	head struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name      string `yaml:"name"`
			Namespace string `yaml:"namespace"`
		} `yaml:"metadata"`
	}
}

func (m manifest) decode(t *testing.T, v any) {
	t.Helper()
	if err := m.node.Decode(v); err != nil {
		t.Fatalf("%s: %s: %v", m.file, m.head.Kind, err)
	}
}

// loadManifests parses every YAML file under kubernetes/, every document of
// each (multi-document aware).
func loadManifests(t *testing.T) []manifest {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests under %s: %v", k8sDir, err)
	}
	var out []manifest
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var n yaml.Node
			err := dec.Decode(&n)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			m := manifest{file: filepath.Base(f), node: &n}
			m.decode(t, &m.head)
			if m.head.Kind == "" {
				t.Fatalf("%s: a document without kind", f)
			}
			out = append(out, m)
		}
	}
	return out
}

func findManifest(t *testing.T, ms []manifest, kind string) manifest {
	t.Helper()
	var found []manifest
	for _, m := range ms {
		if m.head.Kind == kind {
			found = append(found, m)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one %s, found %d", kind, len(found))
	}
	return found[0]
}

type deployment struct {
	Spec struct {
		Replicas *int `yaml:"replicas"`
		Strategy struct {
			Type string `yaml:"type"`
		} `yaml:"strategy"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type podSpec struct {
	HostNetwork     bool   `yaml:"hostNetwork"`
	DNSPolicy       string `yaml:"dnsPolicy"`
	SecurityContext struct {
		RunAsNonRoot *bool  `yaml:"runAsNonRoot"`
		RunAsUser    *int64 `yaml:"runAsUser"`
		FSGroup      *int64 `yaml:"fsGroup"`
	} `yaml:"securityContext"`
	Containers []container `yaml:"containers"`
	Volumes    []volume    `yaml:"volumes"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
	Ports           []containerPort `yaml:"ports"`
	SecurityContext struct {
		RunAsNonRoot             *bool `yaml:"runAsNonRoot"`
		AllowPrivilegeEscalation *bool `yaml:"allowPrivilegeEscalation"`
		ReadOnlyRootFilesystem   bool  `yaml:"readOnlyRootFilesystem"`
		Capabilities             struct {
			Add  []string `yaml:"add"`
			Drop []string `yaml:"drop"`
		} `yaml:"capabilities"`
	} `yaml:"securityContext"`
	StartupProbe   *probe `yaml:"startupProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
		SubPath   string `yaml:"subPath"`
		ReadOnly  bool   `yaml:"readOnly"`
	} `yaml:"volumeMounts"`
}

type containerPort struct {
	Name          string `yaml:"name"`
	ContainerPort int    `yaml:"containerPort"`
	Protocol      string `yaml:"protocol"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		// Port is a number or a container port's name.
		Port string `yaml:"port"`
	} `yaml:"httpGet"`
}

type keyToPath struct {
	Key  string `yaml:"key"`
	Path string `yaml:"path"`
	Mode *int   `yaml:"mode"`
}

type volumeSource struct {
	Name        string      `yaml:"name"`       // configMap, and secret inside projected
	SecretName  string      `yaml:"secretName"` // secret
	DefaultMode *int        `yaml:"defaultMode"`
	Items       []keyToPath `yaml:"items"`
}

type volume struct {
	Name      string        `yaml:"name"`
	ConfigMap *volumeSource `yaml:"configMap"`
	Secret    *volumeSource `yaml:"secret"`
	Projected *struct {
		DefaultMode *int `yaml:"defaultMode"`
		Sources     []struct {
			ConfigMap *volumeSource `yaml:"configMap"`
			Secret    *volumeSource `yaml:"secret"`
		} `yaml:"sources"`
	} `yaml:"projected"`
	EmptyDir              *struct{} `yaml:"emptyDir"`
	HostPath              *struct{} `yaml:"hostPath"`
	PersistentVolumeClaim *struct{} `yaml:"persistentVolumeClaim"`
}

// projectedFile is a file a ConfigMap or Secret key becomes in the container.
type projectedFile struct {
	kind, object, key, path string
	mode                    int
}

// projectedFiles lists, for every ConfigMap and Secret key that reaches the
// container, the file it becomes and its mode. A volume without items
// projects every key of the object; those are listed with key "*".
func projectedFiles(c container, vols []volume) []projectedFile {
	var out []projectedFile
	add := func(mount, kind, object string, src *volumeSource, defaultMode *int) {
		mode := 0o644 // Kubernetes' default
		if defaultMode != nil {
			mode = *defaultMode
		}
		if src.DefaultMode != nil {
			mode = *src.DefaultMode
		}
		if len(src.Items) == 0 {
			out = append(out, projectedFile{kind, object, "*", mount, mode})
		}
		for _, it := range src.Items {
			m := mode
			if it.Mode != nil {
				m = *it.Mode
			}
			out = append(out, projectedFile{kind, object, it.Key, path.Join(mount, it.Path), m})
		}
	}
	for _, vm := range c.VolumeMounts {
		for _, v := range vols {
			if v.Name != vm.Name {
				continue
			}
			switch {
			case v.ConfigMap != nil:
				add(vm.MountPath, "ConfigMap", v.ConfigMap.Name, v.ConfigMap, nil)
			case v.Secret != nil:
				add(vm.MountPath, "Secret", v.Secret.SecretName, v.Secret, nil)
			case v.Projected != nil:
				for _, s := range v.Projected.Sources {
					if s.ConfigMap != nil {
						add(vm.MountPath, "ConfigMap", s.ConfigMap.Name, s.ConfigMap, v.Projected.DefaultMode)
					}
					if s.Secret != nil {
						add(vm.MountPath, "Secret", s.Secret.Name, s.Secret, v.Projected.DefaultMode)
					}
				}
			}
		}
	}
	return out
}

// flagValue returns the value of --name (or -name) in args, in either the
// "--name value" or the "--name=value" form.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		for _, p := range []string{"--" + name, "-" + name} {
			if a == p && i+1 < len(args) {
				return args[i+1], true
			}
			if v, ok := strings.CutPrefix(a, p+"="); ok {
				return v, true
			}
		}
	}
	return "", false
}

type bridgeSecret struct {
	Type       string            `yaml:"type"`
	StringData map[string]string `yaml:"stringData"`
	Data       map[string]string `yaml:"data"`
}

// keys lists the Secret's keys with their example values (data is base64
// and only counted, not decoded).
func (s bridgeSecret) keys() map[string]string {
	out := map[string]string{}
	for k := range s.Data {
		out[k] = "example-password"
	}
	for k, v := range s.StringData {
		out[k] = v
	}
	return out
}

// k8sSet is everything the Kubernetes tests look at, parsed once per test.
type k8sSet struct {
	all       []manifest
	ns        manifest
	deploy    manifest
	d         deployment
	c         container
	cm        manifest
	bridgeYML string
	secret    manifest
	s         bridgeSecret
}

func loadK8s(t *testing.T) k8sSet {
	t.Helper()
	var k k8sSet
	k.all = loadManifests(t)
	k.ns = findManifest(t, k.all, "Namespace")
	k.deploy = findManifest(t, k.all, "Deployment")
	k.deploy.decode(t, &k.d)
	if n := len(k.d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("Deployment: want one container, got %d", n)
	}
	k.c = k.d.Spec.Template.Spec.Containers[0]
	k.cm = findManifest(t, k.all, "ConfigMap")
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	k.cm.decode(t, &cm)
	k.bridgeYML = cm.Data["bridge.yaml"]
	k.secret = findManifest(t, k.all, "Secret")
	k.secret.decode(t, &k.s)
	return k
}

func TestKubernetesManifests(t *testing.T) {
	k := loadK8s(t)
	const name, ns = "ipmi-vmware-bridge", "ipmi-vmware-bridge"
	tests := []struct {
		file, kind, name, namespace string
	}{
		{"namespace.yaml", "Namespace", ns, ""},
		{"secret.yaml", "Secret", name, ns},
		{"configmap.yaml", "ConfigMap", name, ns},
		{"deployment.yaml", "Deployment", name, ns},
		{"kustomization.yaml", "Kustomization", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			m := findManifest(t, k.all, tt.kind)
			if m.file != tt.file {
				t.Errorf("%s is in %s, want %s", tt.kind, m.file, tt.file)
			}
			if m.head.Metadata.Name != tt.name || m.head.Metadata.Namespace != tt.namespace {
				t.Errorf("%s: name %q namespace %q, want %q %q", tt.kind,
					m.head.Metadata.Name, m.head.Metadata.Namespace, tt.name, tt.namespace)
			}
			if m.head.APIVersion == "" {
				t.Errorf("%s: no apiVersion", tt.kind)
			}
		})
	}
	t.Run("only these", func(t *testing.T) {
		if len(k.all) != len(tests) {
			var kinds []string
			for _, m := range k.all {
				kinds = append(kinds, m.file+":"+m.head.Kind)
			}
			t.Errorf("want %d documents, got %v", len(tests), kinds)
		}
	})
	t.Run("namespace allows hostNetwork", func(t *testing.T) {
		var n struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
		}
		k.ns.decode(t, &n)
		if got := n.Metadata.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
			t.Errorf("pod-security enforce = %q; baseline and restricted reject hostNetwork", got)
		}
	})
}

func TestKustomization(t *testing.T) {
	k := loadK8s(t)
	var kz struct {
		Resources []string `yaml:"resources"`
		Images    []struct {
			Name    string `yaml:"name"`
			NewName string `yaml:"newName"`
			NewTag  string `yaml:"newTag"`
		} `yaml:"images"`
	}
	findManifest(t, k.all, "Kustomization").decode(t, &kz)

	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	for _, f := range files {
		f = filepath.Base(f)
		if f == "kustomization.yaml" {
			continue
		}
		t.Run("lists "+f, func(t *testing.T) {
			if !slices.Contains(kz.Resources, f) {
				t.Errorf("resources %v lacks %s", kz.Resources, f)
			}
		})
	}
	t.Run("lists only existing files", func(t *testing.T) {
		for _, r := range kz.Resources {
			if _, err := os.Stat(filepath.Join(k8sDir, r)); err != nil {
				t.Errorf("resource %s: %v", r, err)
			}
		}
	})
	t.Run("sets the Deployment's image", func(t *testing.T) {
		for _, im := range kz.Images {
			if im.Name == k.c.Image && im.NewName != "" {
				return
			}
		}
		t.Errorf("no images entry with newName for %q", k.c.Image)
	})
	t.Run("kubectl kustomize", func(t *testing.T) {
		kubectl, err := exec.LookPath("kubectl")
		if err != nil {
			t.Skip("kubectl not installed")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, kubectl, "kustomize", k8sDir).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl kustomize: %v\n%s", err, out)
		}
		dec := yaml.NewDecoder(bytes.NewReader(out))
		var kinds []string
		for {
			var m struct {
				Kind string `yaml:"kind"`
			}
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			kinds = append(kinds, m.Kind)
		}
		slices.Sort(kinds)
		if want := []string{"ConfigMap", "Deployment", "Namespace", "Secret"}; !slices.Equal(kinds, want) {
			t.Errorf("kustomize built %v, want %v", kinds, want)
		}
	})
}

func TestDeployment(t *testing.T) {
	k := loadK8s(t)
	d, c, pod := k.d, k.c, k.d.Spec.Template.Spec
	portByName := map[string]int{}
	for _, p := range c.Ports {
		portByName[p.Name] = p.ContainerPort
	}
	files := projectedFiles(c, pod.Volumes)
	mountOf := func(dir string) (readOnly bool, vol volume, ok bool) {
		for _, m := range c.VolumeMounts {
			if m.MountPath == dir {
				for _, v := range pod.Volumes {
					if v.Name == m.Name {
						return m.ReadOnly, v, true
					}
				}
			}
		}
		return false, volume{}, false
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"one replica", func(t *testing.T) {
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
				t.Errorf("replicas = %v, want 1: two bridges would fight over the UDP ports and the VMs", d.Spec.Replicas)
			}
		}},
		{"Recreate", func(t *testing.T) {
			if d.Spec.Strategy.Type != "Recreate" {
				t.Errorf("strategy %q, want Recreate", d.Spec.Strategy.Type)
			}
		}},
		{"selector matches template", func(t *testing.T) {
			if len(d.Spec.Selector.MatchLabels) == 0 {
				t.Fatal("no selector")
			}
			for k, v := range d.Spec.Selector.MatchLabels {
				if d.Spec.Template.Metadata.Labels[k] != v {
					t.Errorf("template lacks label %s=%s", k, v)
				}
			}
		}},
		{"hostNetwork", func(t *testing.T) {
			if !pod.HostNetwork {
				t.Error("hostNetwork is false: IPMI must answer on the node's addresses")
			}
			if pod.DNSPolicy != "ClusterFirstWithHostNet" {
				t.Errorf("dnsPolicy %q, want ClusterFirstWithHostNet", pod.DNSPolicy)
			}
		}},
		{"non-root", func(t *testing.T) {
			sc := pod.SecurityContext
			if (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) && (c.SecurityContext.RunAsNonRoot == nil || !*c.SecurityContext.RunAsNonRoot) {
				t.Error("runAsNonRoot not set")
			}
			// The image's USER is a name, which the kubelet cannot check.
			if sc.RunAsUser == nil || *sc.RunAsUser == 0 {
				t.Errorf("runAsUser = %v, want distroless nonroot's number", sc.RunAsUser)
			}
			if sc.FSGroup == nil {
				t.Error("no fsGroup: the 0400 secret files would be unreadable to the non-root user")
			}
		}},
		{"NET_BIND_SERVICE only", func(t *testing.T) {
			caps := c.SecurityContext.Capabilities
			if !slices.Equal(caps.Add, []string{"NET_BIND_SERVICE"}) {
				t.Errorf("capabilities.add = %v, want [NET_BIND_SERVICE] (UDP 623)", caps.Add)
			}
			if !slices.Equal(caps.Drop, []string{"ALL"}) {
				t.Errorf("capabilities.drop = %v, want [ALL]", caps.Drop)
			}
		}},
		{"locked down", func(t *testing.T) {
			sc := c.SecurityContext
			if !sc.ReadOnlyRootFilesystem {
				t.Error("readOnlyRootFilesystem is false")
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Error("allowPrivilegeEscalation must be false")
			}
		}},
		{"metrics listen where the probes reach", func(t *testing.T) {
			addr, ok := flagValue(c.Args, "metrics-address")
			if !ok {
				t.Fatalf("args %v lack --metrics-address; the default 127.0.0.1 is out of the kubelet's reach", c.Args)
			}
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				t.Fatal(err)
			}
			if ip := net.ParseIP(host); host != "" && (ip == nil || ip.IsLoopback()) {
				t.Errorf("--metrics-address %s: the kubelet probes the node's address, not loopback", addr)
			}
			if port != strconv.Itoa(metricsPort) {
				t.Errorf("--metrics-address port %s, want %d", port, metricsPort)
			}
		}},
		{"probes", func(t *testing.T) {
			for _, p := range []struct {
				name  string
				probe *probe
				path  string
			}{
				{"liveness", c.LivenessProbe, "/healthz"},
				{"readiness", c.ReadinessProbe, "/readyz"},
				{"startup", c.StartupProbe, "/healthz"},
			} {
				if p.probe == nil || p.probe.HTTPGet == nil {
					t.Errorf("%s: no httpGet probe", p.name)
					continue
				}
				if p.probe.HTTPGet.Path != p.path {
					t.Errorf("%s probe path %q, want %q", p.name, p.probe.HTTPGet.Path, p.path)
				}
				port, err := strconv.Atoi(p.probe.HTTPGet.Port)
				if err != nil {
					port = portByName[p.probe.HTTPGet.Port]
				}
				if port != metricsPort {
					t.Errorf("%s probe port %q is %d, want %d", p.name, p.probe.HTTPGet.Port, port, metricsPort)
				}
			}
		}},
		{"config file mounted from the ConfigMap", func(t *testing.T) {
			cfg := configPath
			if v, ok := flagValue(c.Args, "config"); ok {
				cfg = v
			}
			if cfg != configPath {
				t.Errorf("--config %s, want %s", cfg, configPath)
			}
			for _, f := range files {
				if f.path == cfg {
					if f.kind != "ConfigMap" || f.object != k.cm.head.Metadata.Name || f.key != "bridge.yaml" {
						t.Errorf("%s comes from %s %s key %s", cfg, f.kind, f.object, f.key)
					}
					return
				}
			}
			t.Errorf("%s is not a mounted ConfigMap key (mounted: %v)", cfg, files)
		}},
		{"Secret mounted 0400", func(t *testing.T) {
			n := 0
			for _, f := range files {
				if f.kind != "Secret" {
					continue
				}
				n++
				if f.object != k.secret.head.Metadata.Name {
					t.Errorf("mounts Secret %q, want %q", f.object, k.secret.head.Metadata.Name)
				}
				if f.mode != 0o400 {
					t.Errorf("%s: mode %#o, want 0400", f.path, f.mode)
				}
				if _, ok := k.s.keys()[f.key]; !ok && f.key != "*" {
					t.Errorf("%s: Secret has no key %q", f.path, f.key)
				}
			}
			if n == 0 {
				t.Error("the Secret is not mounted")
			}
		}},
		{"no subPath", func(t *testing.T) {
			// A subPath mount never sees ConfigMap or Secret updates.
			for _, m := range c.VolumeMounts {
				if m.SubPath != "" {
					t.Errorf("volumeMount %s uses subPath", m.Name)
				}
			}
		}},
		{"state and runtime directories writable", func(t *testing.T) {
			for _, dir := range []struct{ env, want string }{
				{"STATE_DIRECTORY", stateDir},
				{"RUNTIME_DIRECTORY", runtimeDir},
			} {
				if env[dir.env] != dir.want {
					t.Errorf("env %s=%q, want %q", dir.env, env[dir.env], dir.want)
				}
				ro, v, ok := mountOf(dir.want)
				if !ok {
					t.Errorf("%s is not a volume: the root filesystem is read-only", dir.want)
					continue
				}
				if ro || (v.EmptyDir == nil && v.HostPath == nil && v.PersistentVolumeClaim == nil) {
					t.Errorf("%s: volume %s is not a writable directory", dir.want, v.Name)
				}
			}
		}},
		{"resources", func(t *testing.T) {
			for _, r := range []string{"cpu", "memory"} {
				if c.Resources.Requests[r] == "" || c.Resources.Limits[r] == "" {
					t.Errorf("%s: requests %q limits %q", r, c.Resources.Requests[r], c.Resources.Limits[r])
				}
			}
		}},
		{"ports", func(t *testing.T) {
			for _, p := range []struct {
				port  int
				proto string
			}{{metricsPort, "TCP"}, {8000, "TCP"}} {
				if !slices.ContainsFunc(c.Ports, func(cp containerPort) bool {
					return cp.ContainerPort == p.port && cp.Protocol == p.proto
				}) {
					t.Errorf("no container port %d/%s", p.port, p.proto)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

// unmarshalYAML decodes the YAML document doc into v, failing the test if
// it is not YAML or does not fit v.
func unmarshalYAML(t *testing.T, doc string, v any) {
	t.Helper()
	if err := yaml.Unmarshal([]byte(doc), v); err != nil {
		t.Fatal(err)
	}
}

// bmcPorts returns the bmcs[].port values of a bridge.yaml.
func bmcPorts(t *testing.T, doc string) []int {
	t.Helper()
	var cfg struct {
		BMCs []struct {
			Port int `yaml:"port"`
		} `yaml:"bmcs"`
	}
	unmarshalYAML(t, doc, &cfg)
	var ports []int
	for _, b := range cfg.BMCs {
		ports = append(ports, b.Port)
	}
	slices.Sort(ports)
	return ports
}

// keysNamed returns the dotted paths of every mapping key called name.
func keysNamed(n *yaml.Node, name, at string) []string {
	var out []string
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			out = append(out, keysNamed(c, name, at)...)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			out = append(out, keysNamed(c, name, at+"["+strconv.Itoa(i)+"]")...)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := strings.TrimPrefix(at+"."+n.Content[i].Value, ".")
			if n.Content[i].Value == name {
				out = append(out, p)
			}
			out = append(out, keysNamed(n.Content[i+1], name, p)...)
		}
	}
	return out
}

// passwordFiles returns every passwordFile value in a bridge.yaml.
func passwordFiles(t *testing.T, doc string) []string {
	t.Helper()
	var cfg struct {
		VCenter struct {
			PasswordFile string `yaml:"passwordFile"`
		} `yaml:"vcenter"`
		BMCs []struct {
			PasswordFile string `yaml:"passwordFile"`
		} `yaml:"bmcs"`
	}
	unmarshalYAML(t, doc, &cfg)
	var out []string
	if cfg.VCenter.PasswordFile != "" {
		out = append(out, cfg.VCenter.PasswordFile)
	}
	for _, b := range cfg.BMCs {
		out = append(out, b.PasswordFile)
	}
	return out
}

// parseWithFiles runs doc through the bridge's config parser after moving
// every file under prefix into a temporary directory, where files gives
// their contents (by path).
func parseWithFiles(t *testing.T, name, doc, prefix string, files map[string]string, env config.Env) *config.Config {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		local := filepath.Join(dir, strings.TrimPrefix(p, prefix))
		if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(local, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := config.Parse(name, []byte(strings.ReplaceAll(doc, prefix, dir+"/")), env)
	if err != nil {
		t.Fatalf("the bridge rejects %s: %v", name, err)
	}
	return cfg
}

func TestConfigMap(t *testing.T) {
	k := loadK8s(t)
	files := projectedFiles(k.c, k.d.Spec.Template.Spec.Volumes)
	secretPaths := map[string]string{} // container path -> Secret key
	for _, f := range files {
		if f.kind == "Secret" {
			secretPaths[f.path] = f.key
		}
	}
	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"has bridge.yaml", func(t *testing.T) {
			if k.bridgeYML == "" {
				t.Fatal("ConfigMap has no bridge.yaml")
			}
		}},
		{"no password, only passwordFile", func(t *testing.T) {
			var n yaml.Node
			unmarshalYAML(t, k.bridgeYML, &n)
			if keys := keysNamed(&n, "password", ""); len(keys) > 0 {
				t.Errorf("bridge.yaml holds passwords at %v; use passwordFile", keys)
			}
			if keys := keysNamed(&n, "passwordFile", ""); !slices.Contains(keys, "vcenter.passwordFile") {
				t.Errorf("vcenter has no passwordFile (found %v)", keys)
			}
		}},
		{"passwordFiles are mounted Secret keys", func(t *testing.T) {
			for _, p := range passwordFiles(t, k.bridgeYML) {
				if _, ok := secretPaths[p]; !ok {
					t.Errorf("passwordFile %s is not a mounted Secret key (mounted: %v)", p, secretPaths)
				}
			}
		}},
		{"the bridge accepts it with the Secret's files", func(t *testing.T) {
			keys := k.s.keys()
			contents := map[string]string{}
			for p, key := range secretPaths {
				contents[p] = keys[key]
			}
			cfg := parseWithFiles(t, "bridge.yaml", k.bridgeYML, "/etc/ipmi-vmware-bridge/", contents, config.Env{StateDirectory: stateDir})
			if cfg.VCenters[0].Password == "" || cfg.StateDir != stateDir {
				t.Errorf("parsed %+v", cfg)
			}
		}},
		{"UDP ports declared in the Deployment", func(t *testing.T) {
			var udp []int
			for _, p := range k.c.Ports {
				if p.Protocol == "UDP" {
					udp = append(udp, p.ContainerPort)
				}
			}
			slices.Sort(udp)
			if want := bmcPorts(t, k.bridgeYML); !slices.Equal(udp, want) {
				t.Errorf("Deployment's UDP ports %v, bmcs' ports %v", udp, want)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

func TestSecret(t *testing.T) {
	k := loadK8s(t)
	tests := []struct {
		key string
	}{{"vcenter-password"}, {"bmc-password"}}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if _, ok := k.s.keys()[tt.key]; !ok {
				t.Errorf("Secret lacks %s", tt.key)
			}
		})
	}
	t.Run("Opaque", func(t *testing.T) {
		if k.s.Type != "Opaque" {
			t.Errorf("type %q, want Opaque", k.s.Type)
		}
	})
	t.Run("IPMI limit", func(t *testing.T) {
		if v := k.s.keys()["bmc-password"]; len(v) > 20 {
			t.Errorf("bmc-password is %d bytes; IPMI allows 20", len(v))
		}
	})
}

// ------------------------------------------------------------------- systemd

// unit is a parsed systemd unit: section -> key -> values in order.
type unit map[string]map[string][]string

// parseUnit reads systemd's INI dialect: [Section] headers, Key=Value lines,
// # and ; comments, backslash continuations, repeated keys appending.
func parseUnit(r io.Reader) (unit, error) {
	u := unit{}
	var section, pending string
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		l := strings.TrimSpace(sc.Text())
		if pending != "" {
			l = pending + " " + l
			pending = ""
		}
		if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";") {
			continue
		}
		if c, ok := strings.CutSuffix(l, "\\"); ok {
			pending = strings.TrimSpace(c)
			continue
		}
		if strings.HasPrefix(l, "[") {
			if !strings.HasSuffix(l, "]") {
				return nil, errors.New("line " + strconv.Itoa(line) + ": bad section header")
			}
			section = l[1 : len(l)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || section == "" {
			return nil, errors.New("line " + strconv.Itoa(line) + ": not Key=Value in a section: " + l)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		u[section][k] = append(u[section][k], v)
	}
	if pending != "" {
		return nil, errors.New("file ends in a continuation")
	}
	return u, sc.Err()
}

// last is the value in force (systemd: the last assignment wins, for the
// settings checked here).
func (u unit) last(section, key string) string {
	vs := u[section][key]
	if len(vs) == 0 {
		return ""
	}
	return vs[len(vs)-1]
}

func loadUnit(t *testing.T) unit {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u, err := parseUnit(f)
	if err != nil {
		t.Fatalf("%s: %v", unitFile, err)
	}
	return u
}

func TestParseUnit(t *testing.T) {
	tests := []struct {
		name, in string
		want     unit
		bad      bool
	}{
		{"sections and repeats", "[A]\nK=1\n# c\n; c\nK = 2\n[B]\nX=a=b\n",
			unit{"A": {"K": {"1", "2"}}, "B": {"X": {"a=b"}}}, false},
		{"continuation", "[S]\nExecStart=/bin/x \\\n  --y\n", unit{"S": {"ExecStart": {"/bin/x --y"}}}, false},
		{"key outside section", "K=1\n", nil, true},
		{"no equals", "[S]\nK\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseUnit(strings.NewReader(tt.in))
			if (err != nil) != tt.bad {
				t.Fatalf("err = %v, want error %v", err, tt.bad)
			}
			if !tt.bad && !equalUnits(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func equalUnits(a, b unit) bool {
	if len(a) != len(b) {
		return false
	}
	for s, kv := range a {
		if len(kv) != len(b[s]) {
			return false
		}
		for k, v := range kv {
			if !slices.Equal(v, b[s][k]) {
				return false
			}
		}
	}
	return true
}

func TestSystemdUnit(t *testing.T) {
	u := loadUnit(t)
	tests := []struct {
		section, key, want string
	}{
		{"Unit", "After", "network-online.target"},
		{"Unit", "Wants", "network-online.target"},
		{"Service", "Type", "simple"},
		{"Service", "ExecStart", binaryPath + " serve --config " + configPath},
		{"Service", "ExecReload", "/bin/kill -HUP $MAINPID"},
		{"Service", "Restart", "on-failure"},
		{"Service", "RestartSec", "2s"},
		{"Service", "EnvironmentFile", "-/etc/ipmi-vmware-bridge/env"},
		{"Service", "DynamicUser", "yes"},
		{"Service", "StateDirectory", "ipmi-vmware-bridge"},
		{"Service", "StateDirectoryMode", "0700"},
		{"Service", "RuntimeDirectory", "ipmi-vmware-bridge"},
		{"Service", "ConfigurationDirectory", "ipmi-vmware-bridge"},
		{"Service", "LoadCredential", "bmc:/etc/ipmi-vmware-bridge/secrets"},
		{"Service", "RestartForceExitStatus", "SIGHUP"},
		{"Service", "AmbientCapabilities", "CAP_NET_BIND_SERVICE"},
		{"Service", "CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"},
		{"Service", "NoNewPrivileges", "yes"},
		{"Service", "ProtectSystem", "strict"},
		{"Service", "ProtectHome", "yes"},
		{"Service", "PrivateTmp", "yes"},
		{"Service", "PrivateDevices", "yes"},
		{"Service", "ProtectKernelTunables", "yes"},
		{"Service", "ProtectKernelModules", "yes"},
		{"Service", "ProtectKernelLogs", "yes"},
		{"Service", "ProtectControlGroups", "yes"},
		{"Service", "RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"},
		{"Service", "LockPersonality", "yes"},
		{"Service", "MemoryDenyWriteExecute", "yes"},
		{"Service", "StandardOutput", "journal"},
		{"Service", "StandardError", "journal"},
		{"Install", "WantedBy", "multi-user.target"},
	}
	for _, tt := range tests {
		t.Run(tt.section+"."+tt.key, func(t *testing.T) {
			if got := u.last(tt.section, tt.key); got != tt.want {
				t.Errorf("%s=%q, want %q", tt.key, got, tt.want)
			}
		})
	}
	t.Run("SystemCallFilter", func(t *testing.T) {
		if !slices.Contains(u["Service"]["SystemCallFilter"], "@system-service") {
			t.Errorf("SystemCallFilter %v lacks @system-service", u["Service"]["SystemCallFilter"])
		}
	})
	t.Run("LimitNOFILE", func(t *testing.T) {
		// 1000 BMCs: a UDP socket each, plus vCenter, Redfish and metrics.
		if n, err := strconv.Atoi(u.last("Service", "LimitNOFILE")); err != nil || n < 4096 {
			t.Errorf("LimitNOFILE=%q, want at least 4096", u.last("Service", "LimitNOFILE"))
		}
	})
	t.Run("no PrivateUsers", func(t *testing.T) {
		// In a user namespace CAP_NET_BIND_SERVICE does not cover the host's
		// network namespace: port 623 could not be bound.
		if v := u.last("Service", "PrivateUsers"); v != "" && v != "no" {
			t.Errorf("PrivateUsers=%s", v)
		}
	})
	t.Run("systemd-analyze verify", func(t *testing.T) { verifyUnit(t) })
}

// verifyUnit runs systemd-analyze verify on a copy of the unit whose
// binary path points at a stub, as the real binary is not installed here.
// It skips where systemd-analyze is missing or cannot verify even a trivial
// unit (some containers).
func verifyUnit(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "ipmi-vmware-bridge")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	verify := func(name, body string) (string, error) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, sa, "verify", "--man=no", "--generators=no", p).CombinedOutput()
		return string(out), err
	}
	if out, err := verify("probe.service", "[Service]\nExecStart="+stub+"\n"); err != nil {
		t.Skipf("systemd-analyze verify does not work here: %v\n%s", err, out)
	}
	data, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(unitFile)
	out, err := verify(name, strings.ReplaceAll(string(data), binaryPath, stub))
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// verify exits 0 on unknown keys and bad values, which it only warns
	// about; any line about this unit is a finding. Lines about other units
	// (the host's) are not this test's business.
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, name) {
			t.Errorf("systemd-analyze verify: %s", l)
		}
	}
}

func TestBridgeYAMLExample(t *testing.T) {
	data, err := os.ReadFile(exampleFile)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatalf("%s is not YAML: %v", exampleFile, err)
	}
	u := loadUnit(t)
	// LoadCredential=ID:DIR hands each file DIR/NAME to the service as
	// $CREDENTIALS_DIRECTORY/ID_NAME.
	credID, _, _ := strings.Cut(u.last("Service", "LoadCredential"), ":")
	credPrefix := "/run/credentials/" + filepath.Base(unitFile) + "/" + credID + "_"

	keys := map[string]bool{}
	var walk func(n *yaml.Node, at string)
	walk = func(n *yaml.Node, at string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, at)
			}
		case yaml.SequenceNode:
			for _, c := range n.Content {
				walk(c, at+"[]")
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				p := strings.TrimPrefix(at+"."+n.Content[i].Value, ".")
				keys[p] = true
				walk(n.Content[i+1], p)
			}
		}
	}
	walk(&root, "")

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"documented keys", func(t *testing.T) {
			for _, k := range []string{
				"vcenter.url", "vcenter.username", "vcenter.insecure",
				"bmcs[].vm", "bmcs[].address", "bmcs[].port", "bmcs[].username", "bmcs[].passwordFile",
			} {
				if !keys[k] {
					t.Errorf("no %s (keys: %v)", k, keys)
				}
			}
			// Shown, commented out: the unit's environment supplies them.
			for _, k := range []string{"stateDir:", "softOffTimeout:", "caFile:", "IPMI_VMWARE_BRIDGE_VCENTER_PASSWORD"} {
				if !strings.Contains(doc, k) {
					t.Errorf("does not mention %s", k)
				}
			}
		}},
		{"no password in the world-readable file", func(t *testing.T) {
			if k := keysNamed(&root, "password", ""); len(k) > 0 {
				t.Errorf("passwords at %v", k)
			}
		}},
		{"passwordFiles are the unit's credentials", func(t *testing.T) {
			if credID == "" {
				t.Fatal("the unit has no LoadCredential=")
			}
			for _, p := range passwordFiles(t, doc) {
				if !strings.HasPrefix(p, credPrefix) {
					t.Errorf("passwordFile %s is not under %s", p, credPrefix)
				}
			}
		}},
		{"the bridge accepts it, also with the commented settings enabled", func(t *testing.T) {
			files := map[string]string{}
			for _, p := range passwordFiles(t, doc) {
				files[p] = "example-password\n"
			}
			dir := path.Dir(credPrefix) + "/"
			env := config.Env{Password: "vcenter-secret", StateDirectory: stateDir}
			cfg := parseWithFiles(t, "bridge.yaml", doc, dir, files, env)
			if cfg.StateDir != stateDir || cfg.VCenters[0].Password != "vcenter-secret" || len(cfg.BMCs) == 0 {
				t.Errorf("parsed %+v", cfg)
			}
			for _, b := range cfg.BMCs {
				if b.Password != "example-password" {
					t.Errorf("%s: password %q not read from its file", b.VM, b.Password)
				}
			}
			optional := []string{"stateDir", "softOffTimeout", "metricsAddress", "redfish"}
			enabled := uncomment(doc, optional...)
			if enabled == doc {
				t.Fatal("no commented-out settings found")
			}
			cfg = parseWithFiles(t, "bridge.yaml (settings enabled)", enabled, dir, files, env)
			if cfg.SoftOffTimeout == 0 || cfg.Redfish.Address == "" {
				t.Errorf("commented settings not taken: %+v", cfg)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

// uncomment enables the commented-out top-level settings named by keys: a
// line "# key: ..." and the lines "#   ..." nested under it.
func uncomment(doc string, keys ...string) string {
	lines := strings.Split(doc, "\n")
	nested := false
	for i, l := range lines {
		switch {
		case slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(l, "# "+k+":") }):
			lines[i], nested = l[2:], true
		case nested && strings.HasPrefix(l, "#   "):
			lines[i] = l[2:]
		default:
			nested = false
		}
	}
	return strings.Join(lines, "\n")
}

// ----------------------------------------------------------------- container

// instruction is one Containerfile instruction, continuations joined.
type instruction struct {
	cmd, args string
}

type stage struct {
	from, name string
	ins        []instruction
}

// parseContainerfile splits a Containerfile into stages.
func parseContainerfile(r io.Reader) ([]stage, error) {
	var stages []stage
	var cur strings.Builder
	flush := func() error {
		l := strings.TrimSpace(cur.String())
		cur.Reset()
		if l == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(l, " ")
		cmd, args = strings.ToUpper(cmd), strings.TrimSpace(args)
		if cmd == "FROM" {
			f := strings.Fields(args)
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			return nil
		}
		if len(stages) == 0 {
			return errors.New(cmd + " before FROM")
		}
		s := &stages[len(stages)-1]
		s.ins = append(s.ins, instruction{cmd, args})
		return nil
	}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(l, "#") {
			continue // comments, also between continuation lines
		}
		if c, ok := strings.CutSuffix(l, "\\"); ok {
			cur.WriteString(strings.TrimSpace(c) + " ")
			continue
		}
		cur.WriteString(l)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return stages, sc.Err()
}

func (s stage) all(cmd string) []string {
	var out []string
	for _, in := range s.ins {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

func jsonArray(t *testing.T, s string) []string {
	t.Helper()
	var a []string
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		t.Fatalf("%q is not the exec (JSON) form: %v", s, err)
	}
	return a
}

// loadContainerfile parses the image's Containerfile into its stages.
func loadContainerfile(t *testing.T) []stage {
	t.Helper()
	f, err := os.Open(filepath.Join(containerDir, "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stages, err := parseContainerfile(f)
	if err != nil {
		t.Fatal(err)
	}
	return stages
}

func TestContainerfile(t *testing.T) {
	stages := loadContainerfile(t)
	if len(stages) != 2 {
		t.Fatalf("want 2 stages, got %d", len(stages))
	}
	build, final := stages[0], stages[1]
	goBuild := ""
	for _, r := range build.all("RUN") {
		if strings.Contains(r, "go build") {
			goBuild = r
		}
	}
	// The build's -o path, which the final stage must copy.
	out := ""
	if f := strings.Fields(goBuild); slices.Index(f, "-o") >= 0 && slices.Index(f, "-o")+1 < len(f) {
		out = f[slices.Index(f, "-o")+1]
	}

	tests := []struct {
		name  string
		check func(t *testing.T)
	}{
		{"build stage", func(t *testing.T) {
			if build.from != "golang:1.26" || build.name != "build" {
				t.Errorf("FROM %s AS %s, want golang:1.26 AS build", build.from, build.name)
			}
		}},
		{"static, trimmed build", func(t *testing.T) {
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", `-ldflags "-s -w"`, "./cmd/ipmi-vmware-bridge"} {
				if !strings.Contains(goBuild, want) {
					t.Errorf("go build %q lacks %s", goBuild, want)
				}
			}
			if out == "" {
				t.Error("go build has no -o")
			}
		}},
		{"file capability for port 623", func(t *testing.T) {
			// Kubernetes hands a non-root process no ambient capabilities.
			for _, r := range build.all("RUN") {
				if strings.Contains(r, "setcap cap_net_bind_service=+ep "+out) {
					return
				}
			}
			t.Errorf("no setcap cap_net_bind_service=+ep on %s", out)
		}},
		{"final stage", func(t *testing.T) {
			if final.from != "gcr.io/distroless/static-debian12:nonroot" {
				t.Errorf("FROM %s", final.from)
			}
			if runs := final.all("RUN"); len(runs) > 0 {
				t.Errorf("RUN in the final stage, which has no shell: %v", runs)
			}
		}},
		{"binary copied to the entrypoint", func(t *testing.T) {
			ep := jsonArray(t, strings.Join(final.all("ENTRYPOINT"), ""))
			if !slices.Equal(ep, []string{"/ipmi-vmware-bridge"}) {
				t.Fatalf("ENTRYPOINT %v", ep)
			}
			want := "--from=build " + out + " " + ep[0]
			if !slices.Contains(final.all("COPY"), want) {
				t.Errorf("no COPY %s (have %v)", want, final.all("COPY"))
			}
		}},
		{"USER nonroot", func(t *testing.T) {
			if u := final.all("USER"); !slices.Equal(u, []string{"nonroot"}) {
				t.Errorf("USER %v", u)
			}
		}},
		{"CMD", func(t *testing.T) {
			cmd := jsonArray(t, strings.Join(final.all("CMD"), ""))
			if want := []string{"serve", "--config", configPath}; !slices.Equal(cmd, want) {
				t.Errorf("CMD %v, want %v", cmd, want)
			}
		}},
		{"EXPOSE", func(t *testing.T) {
			got := strings.Fields(strings.Join(final.all("EXPOSE"), " "))
			for _, p := range []string{"623-627/udp", "8000/tcp", strconv.Itoa(metricsPort) + "/tcp"} {
				if !slices.Contains(got, p) {
					t.Errorf("EXPOSE %v lacks %s", got, p)
				}
			}
		}},
		{"state and runtime directories owned by nonroot", func(t *testing.T) {
			for _, dir := range []string{stateDir, runtimeDir} {
				if !slices.ContainsFunc(final.all("COPY"), func(c string) bool {
					return strings.Contains(c, "--chown=65532:65532") && strings.HasSuffix(c, " "+dir)
				}) {
					t.Errorf("no COPY --chown=65532:65532 ... %s", dir)
				}
			}
		}},
		{"socket directory", func(t *testing.T) {
			if env := final.all("ENV"); !slices.Contains(env, "RUNTIME_DIRECTORY="+runtimeDir) {
				t.Errorf("ENV %v lacks RUNTIME_DIRECTORY=%s", env, runtimeDir)
			}
		}},
		{"ignore file keeps the build's sources", func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(containerDir, "Containerfile.dockerignore"))
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(string(data), "\n")
			for _, want := range []string{"!go.mod", "!go.sum", "!cmd", "!internal"} {
				if !slices.Contains(lines, want) {
					t.Errorf("ignore file lacks %s", want)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, tt.check)
	}
}

func TestParseContainerfile(t *testing.T) {
	tests := []struct {
		name, in string
		want     []stage
		bad      bool
	}{
		{"stages and continuations", "# c\nFROM a AS b\nRUN x \\\n  # c\n  y\nFROM c\nUSER u\n",
			[]stage{{"a", "b", []instruction{{"RUN", "x y"}}}, {"c", "", []instruction{{"USER", "u"}}}}, false},
		{"instruction before FROM", "RUN x\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseContainerfile(strings.NewReader(tt.in))
			if (err != nil) != tt.bad {
				t.Fatalf("err = %v, want error %v", err, tt.bad)
			}
			if tt.bad {
				return
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
			for i := range got {
				if got[i].from != tt.want[i].from || got[i].name != tt.want[i].name || !slices.Equal(got[i].ins, tt.want[i].ins) {
					t.Errorf("stage %d: got %+v, want %+v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// daemonFlags returns the names of the flags the command defines (the
// string literal naming the flag in fs.String("name", ...) or
// fs.StringVar(&v, "name", ...) and their Bool, Int and Duration kin).
func daemonFlags(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "cmd", "ipmi-vmware-bridge", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no command sources: %v", err)
	}
	flags := map[string]bool{}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			name := sel.Sel.Name
			kind, isVar := strings.CutSuffix(name, "Var")
			if !slices.Contains([]string{"String", "Bool", "Int", "Duration"}, kind) {
				return true
			}
			i := 0
			if isVar {
				i = 1
			}
			if i < len(call.Args) {
				if lit, ok := call.Args[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil {
						flags[s] = true
					}
				}
			}
			return true
		})
	}
	return flags
}

// TestPathsAgree checks that every artifact starts the daemon with the same
// binary, config and directories, using flags the daemon has.
func TestPathsAgree(t *testing.T) {
	u := loadUnit(t)
	k := loadK8s(t)
	stages := loadContainerfile(t)
	cmd := jsonArray(t, strings.Join(stages[len(stages)-1].all("CMD"), ""))
	unitArgs := strings.Fields(u.last("Service", "ExecStart"))[1:]
	flags := daemonFlags(t)

	tests := []struct {
		name string
		args []string
	}{
		{"systemd ExecStart", unitArgs},
		{"image CMD", cmd},
		{"Deployment args", k.c.Args},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.args) == 0 || tt.args[0] != "serve" {
				t.Errorf("args %v do not start with serve", tt.args)
			}
			if v, _ := flagValue(tt.args, "config"); v != configPath {
				t.Errorf("--config %q, want %q", v, configPath)
			}
			for _, a := range tt.args[1:] {
				name, ok := strings.CutPrefix(a, "-")
				if !ok {
					continue // a flag's value
				}
				name, _, _ = strings.Cut(strings.TrimPrefix(name, "-"), "=")
				if !flags[name] {
					t.Errorf("flag %s is not one the daemon defines", a)
				}
			}
		})
	}
}
