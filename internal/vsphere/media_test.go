package vsphere

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/state"
)

// memStore is a state store in memory whose writes can be made to fail.
type memStore struct {
	mu   sync.Mutex
	data map[string][]byte
	fail atomic.Bool
}

func newMemStore() *memStore { return &memStore{data: map[string][]byte{}} }

func (m *memStore) Get(key string, v any) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b, ok := m.data[key]
	if !ok {
		return false, nil
	}
	return true, json.Unmarshal(b, v)
}

func (m *memStore) Put(key string, v any) error {
	if m.fail.Load() {
		return errors.New("disk full")
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[key] = b
	return nil
}

func (m *memStore) Delete(key string) error {
	if m.fail.Load() {
		return errors.New("disk full")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.data, key)
	return nil
}

func (m *memStore) Keys(prefix string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return state.KeysWithPrefix(m.data, prefix)
}

// mediaCounter is a MediaObserver for tests.
type mediaCounter struct {
	bytes, uploads, reused, collected atomic.Int64
}

func (c *mediaCounter) MediaBytes(n int)     { c.bytes.Add(int64(n)) }
func (c *mediaCounter) MediaUploads(d int)   { c.uploads.Add(int64(d)) }
func (c *mediaCounter) MediaReused()         { c.reused.Add(1) }
func (c *mediaCounter) MediaCollected(n int) { c.collected.Add(int64(n)) }
func isoImage(size int, fill byte) []byte {
	b := bytes.Repeat([]byte{fill}, size)
	copy(b[isoMagicOffset:], isoMagic)
	return b
}

// imageServer is the image source of the tests: its content, validators
// and behaviour change under the same URL.
type imageServer struct {
	mu           sync.Mutex
	body         []byte
	etag         string
	lastModified time.Time
	// announce overrides Content-Length; stall holds the body after the
	// first 40 KiB until released (or the client goes).
	announce int64
	stall    chan struct{}
	gets     int
	notMod   int
}

func (s *imageServer) set(body []byte, etag string, lm time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body, s.etag, s.lastModified = body, etag, lm
}

func (s *imageServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	body, etag, lm, announce, stall := s.body, s.etag, s.lastModified, s.announce, s.stall
	s.gets++
	s.mu.Unlock()
	if etag != "" {
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			s.mu.Lock()
			s.notMod++
			s.mu.Unlock()
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	if !lm.IsZero() {
		w.Header().Set("Last-Modified", lm.UTC().Format(http.TimeFormat))
		if ims, err := http.ParseTime(r.Header.Get("If-Modified-Since")); err == nil && !lm.Truncate(time.Second).After(ims) {
			s.mu.Lock()
			s.notMod++
			s.mu.Unlock()
			w.WriteHeader(http.StatusNotModified)
			return
		}
	}
	n := int64(len(body))
	if announce > 0 {
		n = announce
	}
	w.Header().Set("Content-Length", fmt.Sprint(n))
	if stall != nil {
		_, _ = w.Write(body[:40<<10])
		w.(http.Flusher).Flush()
		select {
		case <-stall:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(body[40<<10:])
		return
	}
	_, _ = w.Write(body)
}

type mediaEnv struct {
	*testEnv
	store *memStore
	obs   *mediaCounter
	svc   *MediaService
	img   *imageServer
	url   string
	ds    *object.Datastore
}

// newMediaEnv is a simulator and a media service with the configuration's
// media defaults but a stall timeout of 5 s, and what edit changes.
func newMediaEnv(t *testing.T, edit func(*MediaConfig)) *mediaEnv {
	t.Helper()
	e := &mediaEnv{testEnv: startEnv(t), store: newMemStore(), obs: &mediaCounter{}, img: &imageServer{}}
	cfg := MediaConfig{Media: config.DefaultMedia(), Store: e.store, Observer: e.obs, Log: quiet()}
	cfg.StallTimeout = 5 * time.Second
	if edit != nil {
		edit(&cfg)
	}
	svc, err := NewMediaService(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	srv := httptest.NewServer(e.img)
	t.Cleanup(srv.Close)
	e.url = srv.URL + "/redfish/boot-0e3f.iso"
	if e.ds, err = find.NewFinder(e.out.vim).Datastore(context.Background(), "/DC0/datastore/LocalDS_0"); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *mediaEnv) vm(t *testing.T, name string, persist func(Record) error) *VM {
	return e.bind(t, name, VMOptions{Media: e.svc, Persist: persist})
}

// files lists the media folder on the datastore, through vCenter.
func (e *mediaEnv) files(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	b, err := e.ds.Browser(ctx)
	if err != nil {
		t.Fatal(err)
	}
	task, err := b.SearchDatastore(ctx, e.ds.Path(e.svc.cfg.Folder), &types.HostDatastoreBrowserSearchSpec{MatchPattern: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		if strings.Contains(err.Error(), "not found") || strings.Contains(err.Error(), "FileNotFound") {
			return nil
		}
		t.Fatal(err)
	}
	var out []string
	res := info.Result.(types.HostDatastoreBrowserSearchResults)
	for _, f := range res.File {
		out = append(out, f.GetFileInfo().Path)
	}
	sort.Strings(out)
	return out
}

// noTemporaries fails when an upload left a temporary file.
func (e *mediaEnv) noTemporaries(t *testing.T) []string {
	t.Helper()
	fs := e.files(t)
	for _, f := range fs {
		if !strings.HasSuffix(f, ".iso") {
			t.Fatalf("leftover %s in %v", f, fs)
		}
	}
	for _, k := range e.store.Keys(mediaKeyPrefix) {
		var c mediaCopy
		_, _ = e.store.Get(k, &c)
		if !c.Complete {
			t.Fatalf("temporary still recorded: %+v", c)
		}
	}
	return fs
}

// insert inserts the image the image server serves into v's drive and
// returns the file the CD-ROM shows.
func (e *mediaEnv) insert(t *testing.T, v *VM) string {
	t.Helper()
	if err := v.InsertMedia(context.Background(), e.url); err != nil {
		t.Fatal(err)
	}
	return cdFile(t, e, v)
}

func cdFile(t *testing.T, e *mediaEnv, v *VM) string {
	t.Helper()
	cd, err := object.VirtualDeviceList(e.vmConfig(t, v).Config.Hardware.Device).FindCdrom("")
	if err != nil {
		return ""
	}
	if iso, ok := cd.Backing.(*types.VirtualCdromIsoBackingInfo); ok && cd.Connectable.StartConnected {
		return iso.FileName
	}
	return ""
}

func (e *mediaEnv) readBack(t *testing.T, dsPath string) []byte {
	t.Helper()
	r, _, err := e.ds.Download(context.Background(), trimDS(dsPath), &soap.DefaultDownload)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var b bytes.Buffer
	_, _ = b.ReadFrom(r)
	return b.Bytes()
}

// Ironic republishes boot-<uuid>.iso under the same name and often the
// same size: without validators the image is fetched again every time and
// the CD-ROM gets the new bytes; with a strong ETag or Last-Modified an
// unchanged image is reused after a 304, a changed one fetched.
func TestMediaChangedImageFetchedAgain(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		etag func(i int) string
		lm   func(i int) time.Time
	}{
		{"no validators", func(int) string { return "" }, func(int) time.Time { return time.Time{} }},
		{"strong ETag", func(i int) string { return fmt.Sprintf(`"v%d"`, i) }, func(int) time.Time { return time.Time{} }},
		{"weak ETag", func(i int) string { return fmt.Sprintf(`W/"v%d"`, i) }, func(int) time.Time { return time.Time{} }},
		{"Last-Modified", func(int) string { return "" }, func(i int) time.Time { return time.Date(2026, 1, 1, 0, 0, i, 0, time.UTC) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newMediaEnv(t, nil)
			ctx := context.Background()
			v := e.vm(t, "skinner-worker-2", nil)
			first, second := isoImage(64<<10, 1), isoImage(64<<10, 2)
			e.img.set(first, tc.etag(1), tc.lm(1))
			f1 := e.insert(t, v)
			if !bytes.Equal(e.readBack(t, f1), first) {
				t.Fatal("first image not on the datastore")
			}
			e.noTemporaries(t)

			// The same image again.
			if got := e.insert(t, v); got != f1 {
				t.Fatalf("same image: CD %s, want %s", got, f1)
			}
			strong := strings.HasPrefix(tc.etag(1), `"`) || !tc.lm(1).IsZero()
			if reused := e.img.notMod > 0; reused != strong {
				t.Fatalf("304s %d with validators %v", e.img.notMod, strong)
			}
			if e.obs.reused.Load() == 0 {
				t.Fatal("an identical image was not counted as reused")
			}

			// Republished: same URL, same size, other bytes.
			e.img.set(second, tc.etag(2), tc.lm(2))
			f2 := e.insert(t, v)
			if f2 == f1 || !bytes.Equal(e.readBack(t, f2), second) {
				t.Fatalf("stale image kept: CD %s (was %s)", f2, f1)
			}
			if fs := e.noTemporaries(t); len(fs) != 2 {
				t.Fatalf("files %v", fs)
			}
			if m, _ := v.Media(ctx); !m.Inserted || m.Image != e.url {
				t.Fatalf("media %+v", m)
			}
			if e.obs.uploads.Load() != 0 || e.obs.bytes.Load() < 2*64<<10 {
				t.Fatalf("uploads in flight %d, bytes %d", e.obs.uploads.Load(), e.obs.bytes.Load())
			}
		})
	}
}

// Refused images: each answered ErrInvalidArgument with its class, and
// nothing left on the datastore or in the state.
func TestMediaRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	sources := refusedSources(t)
	e := newMediaEnv(t, func(c *MediaConfig) {
		c.StallTimeout, c.MaxImageSize = time.Second, 1<<20
		c.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	v := e.vm(t, "skinner-worker-1", nil)
	for _, tc := range sources {
		err := v.InsertMedia(ctx, tc.url)
		if !errors.Is(err, machine.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.class) {
			t.Errorf("%s: %v, want %q", tc.url, err, tc.class)
		}
		if err != nil && (strings.Contains(err.Error(), "127.0.0.2") && !strings.Contains(tc.url, "127.0.0.2") || strings.Contains(err.Error(), "10.9.8.7") ||
			strings.Contains(err.Error(), "html") || strings.Contains(err.Error(), "refused")) {
			t.Errorf("%s: internal detail in %q", tc.url, err)
		}
		if cd := cdFile(t, e, v); cd != "" {
			t.Errorf("%s: CD-ROM changed to %s", tc.url, cd)
		}
		if fs := e.noTemporaries(t); len(fs) != 0 {
			t.Errorf("%s: files left %v", tc.url, fs)
		}
	}
	if e.obs.uploads.Load() != 0 {
		t.Errorf("uploads in flight %d", e.obs.uploads.Load())
	}
}

// refusedSources serves images a media policy of 1 MiB, 1 s stall and
// 127.0.0.1 only refuses, each with the class of the refusal; a server on
// 127.0.0.2 stands for an internal address.
func refusedSources(t *testing.T) []struct{ url, class string } {
	other, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skip("127.0.0.2 not available:", err)
	}
	forbidden := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(isoImage(64<<10, 3))
	}))
	forbidden.Listener.Close()
	forbidden.Listener = other
	forbidden.Start()
	t.Cleanup(forbidden.Close)
	mux := http.NewServeMux()
	serve := func(path string, size int, body []byte) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(size))
			_, _ = w.Write(body)
		})
	}
	serve("/huge.iso", 100<<30, isoImage(64<<10, 0))
	serve("/big.iso", 2<<20, isoImage(2<<20, 0))
	serve("/page.iso", 32*4096, bytes.Repeat([]byte("<html>internal error page</html>"), 4096))
	mux.HandleFunc("/redirect.iso", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, forbidden.URL+"/internal/secret.iso", http.StatusFound)
	})
	mux.HandleFunc("/missing.iso", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "backend http://10.9.8.7:8080 down", http.StatusServiceUnavailable)
	})
	release := make(chan struct{})
	mux.HandleFunc("/stall.iso", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(64<<10))
		_, _ = w.Write(isoImage(64<<10, 0)[:40<<10])
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedURL := "http://" + closed.Addr().String() + "/x.iso"
	closed.Close()
	return []struct{ url, class string }{
		{srv.URL + "/huge.iso", "too large: over the limit of 1 MiB"},
		{srv.URL + "/big.iso", "too large"},
		{srv.URL + "/redirect.iso", "address not allowed"},
		{forbidden.URL + "/x.iso", "address not allowed"},
		{srv.URL + "/page.iso", "not an ISO 9660 image"},
		{srv.URL + "/missing.iso", "HTTP status 503"},
		{srv.URL + "/stall.iso", "stalled: no data for 1s"},
		{closedURL, "not reachable"},
	}
}

// HTTPS with a private CA, as Ironic's vmedia TLS: inserted by default,
// refused with VerifyCertificate true, inserted again once media.caFile
// holds the CA. The setting survives as the VM's record.
func TestMediaTLS(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	img := &imageServer{}
	img.set(isoImage(64<<10, 5), "", time.Time{})
	srv := httptest.NewTLSServer(img)
	defer srv.Close()
	url := srv.URL + "/boot.iso"
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, withCA := range []bool{false, true} {
		t.Run(fmt.Sprint("caFile=", withCA), func(t *testing.T) {
			e := newMediaEnv(t, func(c *MediaConfig) {
				if withCA {
					c.CAFile = caFile
				}
			})
			var saved Record
			v := e.vm(t, "skinner-master-1", func(r Record) error { saved = r; return nil })
			if m, _ := v.Media(ctx); m.VerifyCertificate {
				t.Fatal("VerifyCertificate on by default")
			}
			if err := v.InsertMedia(ctx, url); err != nil {
				t.Fatalf("unverified insert: %v", err)
			}
			if err := v.SetMediaVerify(ctx, true); err != nil {
				t.Fatal(err)
			}
			if m, _ := v.Media(ctx); !m.VerifyCertificate || saved.MediaVerify == nil || !*saved.MediaVerify {
				t.Fatalf("media %+v, saved %+v", m, saved)
			}
			err := v.InsertMedia(ctx, url)
			if withCA != (err == nil) {
				t.Fatalf("verified insert: %v", err)
			}
			if err != nil && (!errors.Is(err, machine.ErrInvalidArgument) || !strings.Contains(err.Error(), "TLS certificate not trusted")) {
				t.Fatalf("error %v", err)
			}
			e.noTemporaries(t)
		})
	}
}

// The service takes its policy as it is, so it refuses one it cannot
// work with rather than fill in values of its own.
func TestMediaServiceRefusesPolicy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(*config.Media)
	}{
		{"missing caFile", func(m *config.Media) { m.CAFile = filepath.Join(t.TempDir(), "none.pem") }},
		{"no size limit", func(m *config.Media) { m.MaxImageSize = 0 }},
		{"no stall timeout", func(m *config.Media) { m.StallTimeout = 0 }},
		{"no folder", func(m *config.Media) { m.Folder = "" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := config.DefaultMedia()
			tc.edit(&m)
			if _, err := NewMediaService(MediaConfig{Media: m}); err == nil {
				t.Fatalf("policy %+v accepted", m)
			}
		})
	}
	if _, err := NewMediaService(MediaConfig{Media: config.DefaultMedia()}); err != nil {
		t.Fatalf("the configuration's defaults: %v", err)
	}
}

// Eject and power go on while an upload runs; eject and a second insert
// cancel it, and nothing is left behind.
func TestMediaCancel(t *testing.T) {
	t.Parallel()
	e := newMediaEnv(t, nil)
	ctx := context.Background()
	v := e.vm(t, "skinner-master-0", nil)
	e.img.set(isoImage(64<<10, 7), "", time.Time{})
	for _, how := range []string{"eject", "insert"} {
		t.Run(how, func(t *testing.T) {
			stall := make(chan struct{})
			e.img.mu.Lock()
			e.img.stall = stall
			e.img.mu.Unlock()
			first := make(chan error, 1)
			go func() { first <- v.InsertMedia(ctx, e.url) }()
			clienttest.Eventually(t, "the upload to start", func() bool { return e.obs.uploads.Load() == 1 })
			if err := v.Power(ctx, machine.On); err != nil {
				t.Fatal(err)
			}
			if err := v.Power(ctx, machine.Off); err != nil {
				t.Fatal(err)
			}
			e.img.mu.Lock()
			e.img.stall = nil
			e.img.mu.Unlock()
			switch how {
			case "eject":
				if err := v.EjectMedia(ctx); err != nil {
					t.Fatal(err)
				}
			case "insert":
				if err := v.InsertMedia(ctx, e.url); err != nil {
					t.Fatal(err)
				}
			}
			err := <-first
			if !errors.Is(err, machine.ErrInvalidState) || !strings.Contains(err.Error(), "cancelled") {
				t.Fatalf("first insert: %v", err)
			}
			close(stall)
			fs := e.noTemporaries(t)
			m, _ := v.Media(ctx)
			if how == "eject" && (m.Inserted || len(fs) != 0) {
				t.Fatalf("after eject: %+v, files %v", m, fs)
			}
			if how == "insert" && (!m.Inserted || len(fs) != 1) {
				t.Fatalf("after the second insert: %+v, files %v", m, fs)
			}
		})
	}
}

// A state that cannot be saved changes nothing and is no client error.
func TestMediaStateFailure(t *testing.T) {
	t.Parallel()
	e := newMediaEnv(t, nil)
	ctx := context.Background()
	var fail atomic.Bool
	v := e.vm(t, "skinner-master-2", func(Record) error {
		if fail.Load() {
			return errors.New("disk full")
		}
		return nil
	})
	e.img.set(isoImage(64<<10, 8), "", time.Time{})
	if err := v.InsertMedia(ctx, e.url); err != nil {
		t.Fatal(err)
	}
	before := cdFile(t, e, v)
	fail.Store(true)
	e.img.set(isoImage(64<<10, 9), "", time.Time{})
	err := v.InsertMedia(ctx, e.url)
	if err == nil || errors.Is(err, machine.ErrInvalidArgument) || errors.Is(err, machine.ErrUnavailable) || strings.Contains(err.Error(), "disk full") {
		t.Fatalf("insert with a failing state: %v", err)
	}
	if got := cdFile(t, e, v); got != before {
		t.Fatalf("CD changed to %s", got)
	}
	if err := v.EjectMedia(ctx); err == nil {
		t.Fatal("eject with a failing state succeeded")
	}
	if m, _ := v.Media(ctx); !m.Inserted || cdFile(t, e, v) != before {
		t.Fatalf("eject changed the drive: %+v", m)
	}
	// The media store failing: no upload at all.
	fail.Store(false)
	e.store.fail.Store(true)
	e.img.set(isoImage(64<<10, 10), "", time.Time{})
	if err := v.InsertMedia(ctx, e.url); err == nil || errors.Is(err, machine.ErrInvalidArgument) {
		t.Fatalf("insert with a failing media store: %v", err)
	}
	e.store.fail.Store(false)
	e.noTemporaries(t)
}

// The collector deletes the bridge's unreferenced copies after the grace
// period, and beyond the budget; referenced copies and files it did not
// write stay.
func TestMediaCollect(t *testing.T) {
	t.Parallel()
	clock := clienttest.ClockAt(time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC))
	e := newMediaEnv(t, func(c *MediaConfig) { c.GCGrace, c.MaxFolderSize, c.Now = time.Hour, 3*64<<10, clock.Now })
	ctx := context.Background()
	v := e.vm(t, "skinner-worker-2", nil)
	w := e.vm(t, "skinner-worker-1", nil)
	insertEach := func(n int, fill byte) {
		for i := range n {
			e.img.set(isoImage(64<<10, fill+byte(i)), "", time.Time{})
			e.insert(t, v)
			clock.Advance(time.Minute)
		}
	}
	insertEach(3, 20)
	e.insert(t, w)
	// A file the bridge did not write, in its folder.
	foreign := e.svc.cfg.Folder + "/operator.iso"
	if err := e.ds.Upload(ctx, bytes.NewReader(isoImage(64<<10, 1)), foreign, &soap.DefaultUpload); err != nil {
		t.Fatal(err)
	}
	if fs := e.files(t); len(fs) != 4 {
		t.Fatalf("files %v", fs)
	}
	if n, err := e.svc.Collect(ctx, e.inv); err != nil || n != 0 {
		t.Fatalf("first collection: %d, %v", n, err)
	}
	clock.Advance(59 * time.Minute)
	if n, _ := e.svc.Collect(ctx, e.inv); n != 0 {
		t.Fatalf("collected %d within the grace period", n)
	}
	clock.Advance(2 * time.Minute)
	if n, _ := e.svc.Collect(ctx, e.inv); n != 2 {
		t.Fatalf("collected %d after the grace period, want the 2 unreferenced", n)
	}
	fs := e.files(t)
	if len(fs) != 2 || !slices.Contains(fs, "operator.iso") || !strings.HasSuffix(cdFile(t, e, v), fs[0]) && !strings.HasSuffix(cdFile(t, e, v), fs[1]) {
		t.Fatalf("files %v, CD %s", fs, cdFile(t, e, v))
	}
	for _, vm := range []*VM{v, w} {
		if err := vm.EjectMedia(ctx); err != nil {
			t.Fatal(err)
		}
	}
	clienttest.Eventually(t, "the inventory to see the ejects", func() bool {
		refs, _ := e.inv.referenced()
		return len(refs) == 0
	})
	// Over budget: 4 copies of 64 KiB with a budget of 3: the oldest
	// unreferenced goes at once, the rest wait for the grace period.
	insertEach(4, 40)
	if n, _ := e.svc.Collect(ctx, e.inv); n != 2 {
		t.Fatalf("budget collection: %d, want 2 (4+1 copies, budget 3)", n)
	}
	if e.obs.collected.Load() != 4 {
		t.Fatalf("collected mediaCounter %d", e.obs.collected.Load())
	}
	if fs := e.files(t); len(fs) != 4 || !slices.Contains(fs, "operator.iso") {
		t.Fatalf("files %v", fs)
	}
}

// A refused image is logged with its transport error, and that error (a
// *url.Error) carries the URL it fetched: the image's, or a redirect's,
// with the query that holds a signed URL's token. The log shows it
// redacted, as everywhere else, while the error keeps its class.
func TestMediaRefusedLogHidesToken(t *testing.T) {
	t.Parallel()
	e := newMediaEnv(t, func(c *MediaConfig) {
		c.StallTimeout = time.Second
		c.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	logs := &clienttest.Buffer{}
	v := e.bind(t, "skinner-master-0", VMOptions{Media: e.svc, Log: slog.New(slog.NewTextHandler(logs, nil))})
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://user:hunter2@192.0.2.1/boot.iso?X-Amz-Signature=REDIRECTTOKEN", http.StatusFound)
	}))
	defer redirect.Close()
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedURL := "http://user:hunter2@" + closed.Addr().String() + "/boot.iso?X-Amz-Signature=SECRETTOKEN"
	closed.Close()
	for _, u := range []string{closedURL, redirect.URL + "/boot.iso?sig=FIRSTTOKEN"} {
		err := v.InsertMedia(context.Background(), u)
		if !errors.Is(err, machine.ErrInvalidArgument) {
			t.Errorf("%s: %v, want a refused image", u, err)
		}
	}
	out := logs.String()
	if !strings.Contains(out, "virtual media refused") || !strings.Contains(out, "err=") {
		t.Fatalf("refusals not logged with their error:\n%s", out)
	}
	for _, secret := range []string{"SECRETTOKEN", "REDIRECTTOKEN", "FIRSTTOKEN", "hunter2"} {
		if strings.Contains(out, secret) {
			t.Errorf("%s in the log:\n%s", secret, out)
		}
	}
}

// redactError cleans every URL in an error's text, quoted or not, and
// keeps the error's chain for errors.Is/As.
func TestRedactError(t *testing.T) {
	t.Parallel()
	inner := &url.Error{Op: "Get", URL: "https://u:pw@h/x.iso?token=T1", Err: context.DeadlineExceeded}
	err := redactError(fmt.Errorf("fetch: %w", inner), nil)
	if s := err.Error(); strings.Contains(s, "T1") || strings.Contains(s, "pw") || !strings.Contains(s, "https://u:xxxxx@h/x.iso?…") {
		t.Errorf("redacted: %q", s)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("chain lost: %v", err)
	}
	plain := errors.New("no URL here")
	if redactError(plain, nil) != plain {
		t.Error("an error without a URL was rewrapped")
	}
}

// The collector chooses the copies to delete on a snapshot, then deletes
// them while inserts go on. An insert of the same image in between used to
// reuse the chosen copy (its source answering 304) and connect it, and the
// collector then deleted it: the VM's CD-ROM on a file that is gone. Now a
// chosen copy is skipped by reuse (the image is fetched again; its bytes
// land on the same file name, which takes the copy back from the
// collector), and the collector checks each copy again before deleting.
func TestMediaCollectSparesCopyReusedMeanwhile(t *testing.T) {
	t.Parallel()
	e := newMediaEnv(t, func(c *MediaConfig) { c.GCGrace = -1 })
	ctx := context.Background()
	v := e.vm(t, "skinner-worker-2", nil)
	w := e.vm(t, "skinner-worker-1", nil)
	e.img.set(isoImage(64<<10, 7), `"v1"`, time.Time{})
	if err := v.InsertMedia(ctx, e.url); err != nil {
		t.Fatal(err)
	}
	file := cdFile(t, e, v)
	if err := v.EjectMedia(ctx); err != nil {
		t.Fatal(err)
	}
	clienttest.Eventually(t, "the inventory to see the eject", func() bool {
		refs, _ := e.inv.referenced()
		return len(refs) == 0
	})
	e.svc.collectHook = func() {
		// Between the collector's choice and its deletes.
		if err := w.InsertMedia(ctx, e.url); err != nil {
			t.Errorf("insert during the collection: %v", err)
		}
	}
	n, err := e.svc.Collect(ctx, e.inv)
	e.svc.collectHook = nil
	if err != nil {
		t.Fatal(err)
	}
	if got := cdFile(t, e, w); got != file {
		t.Fatalf("the VM inserted during the collection has %q, want the copy %q", got, file)
	}
	if n != 0 {
		t.Errorf("collected %d copies, one of them connected meanwhile", n)
	}
	if fs := e.files(t); len(fs) != 1 || !strings.HasSuffix(file, fs[0]) {
		t.Errorf("files on the datastore %v; the connected copy %s must be there", fs, file)
	}
	// Once unreferenced again it goes, as any other.
	if err := w.EjectMedia(ctx); err != nil {
		t.Fatal(err)
	}
	clienttest.Eventually(t, "the inventory to see the eject", func() bool {
		refs, _ := e.inv.referenced()
		return len(refs) == 0
	})
	if n, err := e.svc.Collect(ctx, e.inv); n != 1 || err != nil {
		t.Errorf("later collection: %d, %v; want the copy collected", n, err)
	}
}
