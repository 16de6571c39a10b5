package daemon

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest/vcsimtest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/vsphere"
)

// isoSource is Ironic's image server: the boot ISO (see set), which the
// test replaces as Ironic regenerates it, over HTTP and over HTTPS with a
// private CA, and moved.iso, a redirect to internal.
type isoSource struct {
	mu          sync.Mutex
	iso         []byte
	http, https *httptest.Server
}

func newISOSource(t *testing.T, internal string) *isoSource {
	src := &isoSource{}
	images := http.NewServeMux()
	images.HandleFunc("/ironic/boot-worker-2.iso", func(w http.ResponseWriter, r *http.Request) {
		src.mu.Lock()
		b := src.iso
		src.mu.Unlock()
		w.Header().Set("Content-Length", fmt.Sprint(len(b)))
		_, _ = w.Write(b)
	})
	images.HandleFunc("/ironic/moved.iso", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, internal+"/admin/secret.iso", http.StatusFound)
	})
	src.http, src.https = httptest.NewServer(images), httptest.NewTLSServer(images)
	t.Cleanup(src.http.Close)
	t.Cleanup(src.https.Close)
	return src
}

// set makes the ISO 128 KiB of fill, an ISO 9660 image by its signature,
// and returns it.
func (src *isoSource) set(fill byte) []byte {
	iso := bytes.Repeat([]byte{fill}, 128<<10)
	copy(iso[32769:], "CD001")
	src.mu.Lock()
	src.iso = iso
	src.mu.Unlock()
	return iso
}

// mediaView reads the media folder and skinner-worker-2's CD-ROM straight
// from the simulator.
type mediaView struct {
	c  *vsphere.Client
	ds *object.Datastore
}

func newMediaView(t *testing.T, sim *vsphere.Simulator) mediaView {
	c, err := vsphere.Connect(context.Background(), vcsimtest.Options(sim))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := find.NewFinder(c.Vim()).Datastore(context.Background(), "/DC0/datastore/LocalDS_0")
	if err != nil {
		t.Fatal(err)
	}
	return mediaView{c: c, ds: ds}
}

// folder lists the media folder's ISOs; anything else there is a leftover.
func (v mediaView) folder(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	b, err := v.ds.Browser(ctx)
	if err != nil {
		t.Fatal(err)
	}
	task, err := b.SearchDatastore(ctx, v.ds.Path(config.DefaultMediaFolder), &types.HostDatastoreBrowserSearchSpec{MatchPattern: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return nil
	}
	var out []string
	for _, f := range info.Result.(types.HostDatastoreBrowserSearchResults).File {
		name := f.GetFileInfo().Path
		if !strings.HasSuffix(name, ".iso") {
			t.Fatalf("leftover %s in the media folder", name)
		}
		out = append(out, name)
	}
	return out
}

// cd is the ISO in skinner-worker-2's CD-ROM.
func (v mediaView) cd(t *testing.T) []byte {
	t.Helper()
	ctx := context.Background()
	vm, err := find.NewFinder(v.c.Vim()).VirtualMachine(ctx, "skinner-worker-2")
	if err != nil {
		t.Fatal(err)
	}
	devices, err := vm.Device(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cd, err := devices.FindCdrom("")
	if err != nil {
		t.Fatal(err)
	}
	b, ok := cd.Backing.(*types.VirtualCdromIsoBackingInfo)
	if !ok {
		t.Fatal("CD-ROM holds no ISO")
	}
	var p object.DatastorePath
	p.FromString(b.FileName)
	rc, _, err := v.ds.Download(ctx, p.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got, _ := io.ReadAll(rc)
	return got
}

// TestRedfishMediaTrust is Ironic re-provisioning through sushy against
// the daemon and the simulator: a boot ISO republished under the same URL
// and size is fetched again and boots; a redirect out of
// media.allowedNetworks and an HTTPS image with a private CA under
// VerifyCertificate are refused with the class of failure only; the media
// folder holds no leftover after each step; the metrics count it.
func TestRedfishMediaTrust(t *testing.T) {
	t.Parallel()
	other, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skip("127.0.0.2 not available:", err)
	}
	internal := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "internal admin page", http.StatusForbidden)
	}))
	internal.Listener.Close()
	internal.Listener = other
	internal.Start()
	defer internal.Close()

	sd := startSimDaemon(t, "metricsAddress: 127.0.0.1:0\nmedia:\n  allowedNetworks: [127.0.0.1/32]\n  stallTimeout: 1s\n")
	url, system := sd.redfishURL, "/redfish/v1/Systems/skinner-worker-2"
	src := newISOSource(t, internal.URL)
	image := src.http.URL + "/ironic/boot-worker-2.iso"
	view := newMediaView(t, sd.sim)

	first := src.set(1)
	sushy(t, url, system, "eject=system", "insert=system:"+image)
	if !bytes.Equal(view.cd(t), first) || len(view.folder(t)) != 1 {
		t.Fatalf("first image: folder %v", view.folder(t))
	}
	// Re-provisioning: Ironic regenerates the ISO under the same name and
	// size, ejects and inserts.
	next := src.set(2)
	sushy(t, url, system, "eject=system", "insert=system:"+image)
	if !bytes.Equal(view.cd(t), next) {
		t.Fatal("the stale image is on the CD-ROM")
	}
	if f := view.folder(t); len(f) != 2 {
		t.Fatalf("folder %v", f)
	}
	refusedMedia(t, sd, src, view)
	// VerifyCertificate false again: the private-CA image inserts.
	sushy(t, url, system, "verify=system:false", "insert=system:"+src.https.URL+"/ironic/boot-worker-2.iso")
	if !bytes.Equal(view.cd(t), next) {
		t.Fatal("HTTPS image not inserted")
	}
	// The http image again, unchanged (its server sends no validators):
	// fetched, found identical to its copy, and that copy reused.
	sushy(t, url, system, "insert=system:"+image)
	if f := view.folder(t); len(f) != 3 {
		t.Fatalf("folder %v", f)
	}
	mediaMetrics(t, sd.d.ep.Metrics)
}

// refusedMedia: a redirect out of media.allowedNetworks and a private-CA
// image under VerifyCertificate are refused with their class of failure
// only, naming nothing of the network behind, and leave nothing behind.
func refusedMedia(t *testing.T, sd *simDaemon, src *isoSource, view mediaView) {
	t.Helper()
	for _, tc := range []struct {
		steps []string
		class string
	}{
		{[]string{"eject=system", "insert=system:" + src.http.URL + "/ironic/moved.iso"}, "address not allowed"},
		{[]string{"eject=system", "verify=system:true", "insert=system:" + src.https.URL + "/ironic/boot-worker-2.iso"}, "TLS certificate not trusted"},
	} {
		out := sushyTry(t, sd.redfishURL, "/redfish/v1/Systems/skinner-worker-2", tc.steps...)
		last := out[len(out)-1]
		msg := fmt.Sprint(last["message"])
		if last["error"] == nil || fmt.Sprint(last["status"]) != "400" || !strings.Contains(msg, tc.class) {
			t.Fatalf("%v: %v", tc.steps, out)
		}
		for _, leak := range []string{"127.0.0.2", "admin page", "secret.iso", sd.sim.URL.Host, "x509"} {
			if strings.Contains(msg, leak) {
				t.Errorf("%v: the answer shows %q: %s", tc.steps, leak, msg)
			}
		}
		view.folder(t)
	}
}

// mediaMetrics checks the media families after TestRedfishMediaTrust's
// inserts: one copy reused, none collected, no upload left in flight.
func mediaMetrics(t *testing.T, metricsURL string) {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		"ipmi_vmware_bridge_media_uploaded_bytes_total", "ipmi_vmware_bridge_media_uploads_in_flight 0",
		"ipmi_vmware_bridge_media_copies_reused_total 1", "ipmi_vmware_bridge_media_copies_collected_total 0",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %q:\n%s", want, grepLines(string(body), "media_"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
