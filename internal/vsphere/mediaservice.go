package vsphere

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// MediaConfig is the virtual-media policy every VM of a bridge shares:
// the configuration's media settings, taken as they are, and where the
// service records and reports what it does.
type MediaConfig struct {
	config.Media
	// Store records the copies the bridge uploaded; only those are ever
	// deleted. Nil: nothing is recorded, reused or collected.
	Store MediaStore
	// StorePrefix goes before this service's entries in Store: each
	// vCenter has its own service, and one must never collect, as
	// unreferenced, a copy another vCenter's VMs use.
	StorePrefix string
	// Observer counts bytes, uploads, reuses and collections; nil: none.
	Observer MediaObserver
	Log      *slog.Logger
	// Now is the clock of the collector (time.Now if nil).
	Now func() time.Time
}

// MediaStore is where copies are recorded (a *state.Store).
type MediaStore interface {
	Get(key string, v any) (bool, error)
	Put(key string, v any) error
	Delete(key string) error
	Keys(prefix string) []string
}

// MediaObserver receives virtual-media metrics.
type MediaObserver interface {
	MediaBytes(n int)
	MediaUploads(delta int)
	MediaReused()
	MediaCollected(n int)
}

type noObserver struct{}

func (noObserver) MediaBytes(int)     {}
func (noObserver) MediaUploads(int)   {}
func (noObserver) MediaReused()       {}
func (noObserver) MediaCollected(int) {}

// mediaKeyPrefix starts the state entries of uploaded copies.
const mediaKeyPrefix = "media/"

// mediaCopy is a file the bridge wrote to a datastore.
type mediaCopy struct {
	File       string `json:"file"` // "[ds] folder/name"
	Datacenter string `json:"datacenter"`
	Size       int64  `json:"size"`
	// Complete: checked and moved into place; otherwise a temporary file
	// of an upload (in progress, or cut short by a crash).
	Complete bool `json:"complete,omitempty"`
	// URLKey is the SHA-256 of the image URL (not the URL: it may hold a
	// token); SHA256 is the content's, computed while streaming.
	URLKey string `json:"urlKey,omitempty"`
	SHA256 string `json:"sha256,omitempty"`
	// ETag (strong) and LastModified are the source's validators when
	// it was fetched.
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"lastModified,omitempty"`
	Created      time.Time `json:"created"`
	Used         time.Time `json:"used"`
}

// MediaService carries the policy and does the shared work of virtual
// media: fetching, recording and collecting copies, and the one insert in
// progress per VM.
type MediaService struct {
	cfg               MediaConfig
	obs               MediaObserver
	log               *slog.Logger
	verified, trusted *http.Client

	mu sync.Mutex
	// ops is the insert in progress per VM.
	ops map[*VM]*mediaOp
	// busy counts the uploads writing each file.
	busy map[string]int
	// unused is when the collector first saw each copy unreferenced.
	unused map[string]time.Time
	// copies caches the recorded copies by file.
	copies map[string]*mediaCopy
	// deleting are the copies the collector chose to delete: false while
	// it may still change its mind (a later look finds the copy in use),
	// true once the delete is sent. Reuse skips them all; lookup takes
	// back one not yet sent (see Collect).
	deleting map[string]bool
	// collectHook, when set (tests), runs between the collector's choice
	// and its re-check.
	collectHook func()
}

type mediaOp struct {
	cancel context.CancelCauseFunc
	done   chan struct{}
}

var (
	errStalled    = errors.New("image source stalled")
	errSuperseded = errors.New("superseded by a later insert")
	errEjected    = errors.New("ejected")
	errNotAllowed = errors.New("address outside media.allowedNetworks")
)

// defaultMedia serves VMs given no service: the configuration's
// defaults, nothing recorded (no CA file, so it cannot fail).
var defaultMedia = sync.OnceValue(func() *MediaService {
	s, err := NewMediaService(MediaConfig{Media: config.DefaultMedia()})
	if err != nil {
		panic(err)
	}
	return s
})

// NewMediaService checks cfg (the limits, the CA file) and returns the
// service.
func NewMediaService(cfg MediaConfig) (*MediaService, error) {
	switch {
	case cfg.MaxImageSize <= 0:
		return nil, fmt.Errorf("media.maxImageSize %d: must be positive", cfg.MaxImageSize)
	case cfg.StallTimeout <= 0:
		return nil, fmt.Errorf("media.stallTimeout %v: must be positive", cfg.StallTimeout)
	case cfg.Folder == "":
		return nil, errors.New("media.folder: must not be empty")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &MediaService{cfg: cfg, obs: cfg.Observer, log: cfg.Log,
		ops: map[*VM]*mediaOp{}, busy: map[string]int{}, unused: map[string]time.Time{}, copies: map[string]*mediaCopy{},
		deleting: map[string]bool{}}
	if s.obs == nil {
		s.obs = noObserver{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("media.caFile: %w", err)
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("media.caFile %s: no PEM certificate in it", cfg.CAFile)
		}
	}
	s.verified = s.newClient(&tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12})
	s.trusted = s.newClient(&tls.Config{InsecureSkipVerify: true}) //nolint:gosec // VerifyCertificate false, as BMCs ship
	if cfg.Store != nil {
		for _, k := range cfg.Store.Keys(cfg.StorePrefix + mediaKeyPrefix) {
			var c mediaCopy
			if ok, err := cfg.Store.Get(k, &c); ok && err == nil && c.File != "" {
				s.copies[c.File] = &c
			}
		}
	}
	return s, nil
}

// newClient fetches images. No overall timeout: an installer ISO takes
// minutes; the stall timer and the request context bound it.
func (s *MediaService) newClient(tc *tls.Config) *http.Client {
	d := &net.Dialer{Timeout: 30 * time.Second}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         d.DialContext,
		TLSClientConfig:     tc,
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConns:        4,
		IdleConnTimeout:     30 * time.Second,
	}
	if nets := s.cfg.AllowedNetworks; len(nets) > 0 {
		// The address actually dialled, after name resolution, for the
		// first request and every redirect alike.
		tr.Proxy = nil
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return errNotAllowed
			}
			ip := ap.Addr().Unmap()
			if slices.ContainsFunc(nets, func(p netip.Prefix) bool { return p.Contains(ip) }) {
				return nil
			}
			return errNotAllowed
		}
	}
	return &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 5 {
			return errTooManyRedirects
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
			return errRedirectScheme
		}
		return nil
	}}
}

var (
	errTooManyRedirects = errors.New("too many redirects")
	errRedirectScheme   = errors.New("redirect to a scheme other than http or https")
)

func (s *MediaService) client(verify bool) *http.Client {
	if verify {
		return s.verified
	}
	return s.trusted
}

// classifyFetch names the class of a failed request to an image's source,
// without its details: the error otherwise tells open from closed ports
// and names internal addresses.
func classifyFetch(err error) string {
	var unknownCA x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, errNotAllowed):
		return "address not allowed (media.allowedNetworks)"
	case errors.As(err, &unknownCA), errors.As(err, &invalid), errors.As(err, &host), errors.As(err, &verr):
		return "TLS certificate not trusted (VerifyCertificate is on)"
	case errors.Is(err, errTooManyRedirects), errors.Is(err, errRedirectScheme):
		return "redirect refused"
	}
	return "not reachable"
}

// formatSize writes n bytes in binary units.
func formatSize(n int64) string {
	for _, u := range []struct {
		s string
		n int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.n && n%u.n == 0 {
			return fmt.Sprintf("%d %s", n/u.n, u.s)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}

// begin makes the caller the VM's insert in progress: the one before is
// cancelled, and waited for so that its temporary file is gone. done ends
// the operation.
func (s *MediaService) begin(ctx context.Context, v *VM) (context.Context, func(), error) {
	opCtx, cancel := context.WithCancelCause(ctx)
	op := &mediaOp{cancel: cancel, done: make(chan struct{})}
	s.mu.Lock()
	prev := s.ops[v]
	s.ops[v] = op
	s.mu.Unlock()
	done := func() {
		s.mu.Lock()
		if s.ops[v] == op {
			delete(s.ops, v)
		}
		s.mu.Unlock()
		cancel(nil)
		close(op.done)
	}
	if prev != nil {
		prev.cancel(errSuperseded)
		select {
		case <-prev.done:
		case <-opCtx.Done():
			return opCtx, done, s.cancelled(opCtx, nil)
		}
	}
	return opCtx, done, nil
}

// stop cancels the VM's insert in progress and waits for it to end.
func (s *MediaService) stop(ctx context.Context, v *VM) error {
	s.mu.Lock()
	op := s.ops[v]
	delete(s.ops, v)
	s.mu.Unlock()
	if op == nil {
		return nil
	}
	op.cancel(errEjected)
	select {
	case <-op.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("eject: waiting for the insert in progress to stop: %w", machine.ErrBusy)
	}
}

func (s *MediaService) now() time.Time { return s.cfg.Now() }

// reusable is the recorded copy of the image whose source can prove it
// unchanged, if it is still on ds.
func (s *MediaService) reusable(ctx context.Context, ds *object.Datastore, key string) *mediaCopy {
	s.mu.Lock()
	var best *mediaCopy
	for _, c := range s.copies {
		if _, doomed := s.deleting[c.File]; doomed {
			continue // being collected: fetched afresh instead
		}
		if c.Complete && c.URLKey == key && (c.ETag != "" || c.LastModified != "") &&
			dsName(c.File) == ds.Name() && (best == nil || c.Used.After(best.Used)) {
			best = c
		}
	}
	var out *mediaCopy
	if best != nil {
		cp := *best
		out = &cp
		s.busy[out.File]++ // held: the collector leaves it alone
	}
	s.mu.Unlock()
	if out == nil {
		return nil
	}
	info, err := ds.Stat(ctx, trimDS(out.File))
	if err != nil || info.GetFileInfo().FileSize != out.Size {
		s.inflight(out.File, -1)
		return nil
	}
	return out
}

// lookup returns a copy of the complete recorded copy at file, if any,
// held (see inflight) for the caller.
func (s *MediaService) lookup(file string) *mediaCopy {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sent, doomed := s.deleting[file]; doomed {
		if sent {
			return nil
		}
		// Chosen for collection but not yet deleted: taken back. The
		// collector re-checks under s.mu before sending the delete.
		delete(s.deleting, file)
	}
	if c, ok := s.copies[file]; ok && c.Complete {
		cp := *c
		s.busy[file]++
		return &cp
	}
	return nil
}

func (s *MediaService) record(c *mediaCopy) error {
	if s.cfg.Store != nil {
		if err := s.cfg.Store.Put(s.cfg.StorePrefix+mediaKeyPrefix+c.File, c); err != nil {
			return err
		}
	}
	cp := *c
	s.mu.Lock()
	s.copies[c.File] = &cp
	delete(s.unused, c.File)
	s.mu.Unlock()
	return nil
}

func (s *MediaService) forget(c *mediaCopy) {
	if s.cfg.Store != nil {
		if err := s.cfg.Store.Delete(s.cfg.StorePrefix + mediaKeyPrefix + c.File); err != nil {
			s.log.Error("virtual media: state not saved", "err", err)
			return
		}
	}
	s.mu.Lock()
	delete(s.copies, c.File)
	delete(s.unused, c.File)
	s.mu.Unlock()
}

func (s *MediaService) touch(c *mediaCopy) {
	c.Used = s.now()
	if err := s.record(c); err != nil {
		s.log.Warn("virtual media: use of a copy not recorded", "file", c.File, "err", err)
	}
}

func (s *MediaService) inflight(file string, d int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy[file] += d
	if s.busy[file] <= 0 {
		delete(s.busy, file)
	}
}

// remove deletes a recorded file and its record; a file that cannot be
// deleted stays recorded, for the collector.
func (s *MediaService) remove(ctx context.Context, c *Client, dc *object.Datacenter, entry *mediaCopy) bool {
	ctx, cancel := context.WithTimeout(ctx, fileTaskTimeout)
	defer cancel()
	if dc == nil {
		var err error
		if dc, err = find.NewFinder(c.vim).Datacenter(ctx, entry.Datacenter); err != nil {
			s.log.Warn("virtual media: datacenter of a copy not found; kept", "file", entry.File, "err", err)
			return false
		}
	}
	task, err := object.NewFileManager(c.vim).DeleteDatastoreFile(ctx, entry.File, dc)
	if err == nil {
		err = c.waitTask(ctx, task, nil)
	}
	if err != nil && !isFileNotFound(err) {
		s.log.Warn("virtual media: copy not deleted; the collector retries", "file", entry.File, "err", err)
		return false
	}
	s.forget(entry)
	return true
}

func isFileNotFound(err error) bool {
	return err != nil && fault.Is(err, &types.FileNotFound{})
}

func (s *MediaService) move(ctx context.Context, c *Client, dc *object.Datacenter, from, to string) error {
	ctx, cancel := context.WithTimeout(ctx, fileTaskTimeout)
	defer cancel()
	task, err := object.NewFileManager(c.vim).MoveDatastoreFile(ctx, from, dc, to, dc, false)
	if err == nil {
		err = c.waitTask(ctx, task, nil)
	}
	return err
}

// fileTaskTimeout bounds a datastore file task (a move or a delete within
// one datastore: metadata only).
const fileTaskTimeout = 30 * time.Second

func dsName(file string) string {
	if len(file) > 0 && file[0] == '[' {
		for i := 1; i < len(file); i++ {
			if file[i] == ']' {
				return file[1:i]
			}
		}
	}
	return ""
}

func trimDS(file string) string {
	if n := dsName(file); n != "" {
		rest := file[len(n)+2:]
		if len(rest) > 0 && rest[0] == ' ' {
			rest = rest[1:]
		}
		return rest
	}
	return file
}

// referenced lists the ISO files any VM's CD-ROM uses, from the
// inventory, or fails when the inventory is not in sync.
func (inv *Inventory) referenced() (map[string]bool, error) {
	inv.mu.RLock()
	defer inv.mu.RUnlock()
	if err := inv.availableLocked(); err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, vm := range inv.vms {
		if vm.Config == nil {
			continue
		}
		for _, d := range vm.Config.Hardware.Device {
			if cd, ok := d.(*types.VirtualCdrom); ok {
				if iso, ok := cd.Backing.(*types.VirtualCdromIsoBackingInfo); ok {
					out[iso.FileName] = true
				}
			}
		}
	}
	return out, nil
}

// Collect deletes the bridge's copies that no VM references: those
// unreferenced for the grace period, then, while the copies exceed the
// folder budget, the least recently used unreferenced ones. Files the
// bridge did not record are never touched. It returns how many it deleted.
//
// The choice is made on a snapshot of the references, while inserts go on:
// one may reuse a chosen copy and connect it before the delete is sent.
// So the chosen copies are marked (deleting) under s.mu, where reuse skips
// them, and each is checked again just before its delete: still recorded,
// not held by an insert, not used since the choice, and referenced by no
// VM in a fresh look at the inventory.
func (s *MediaService) Collect(ctx context.Context, inv *Inventory) (int, error) {
	refs, err := inv.referenced()
	if err != nil {
		return 0, err
	}
	doomed := s.choose(refs)
	if s.collectHook != nil {
		s.collectHook()
	}
	// The references again, read after the mark: a reuse that connected a
	// copy before the mark shows in them (or is still held).
	refs, err = inv.referenced()
	n := 0
	for _, c := range doomed {
		if s.reprieve(c, refs, err) {
			continue
		}
		ok := s.remove(ctx, inv.c, nil, c)
		s.mu.Lock()
		delete(s.deleting, c.File)
		s.mu.Unlock()
		if ok {
			n++
			s.log.Info("virtual media copy collected", "file", c.File, "bytes", c.Size)
		}
	}
	if n > 0 {
		s.obs.MediaCollected(n)
	}
	return n, nil
}

// choose picks, from refs (the files VMs reference), the copies to
// collect and marks them (deleting): those unreferenced for the grace
// period, then, while the copies exceed the folder budget, the least
// recently used unreferenced ones.
func (s *MediaService) choose(refs map[string]bool) []*mediaCopy {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	var candidates []*mediaCopy
	var total int64
	for file, c := range s.copies {
		total += c.Size
		if _, doomed := s.deleting[file]; doomed {
			continue // a concurrent collection has it
		}
		if refs[file] || s.busy[file] > 0 {
			delete(s.unused, file)
			continue
		}
		if _, ok := s.unused[file]; !ok {
			s.unused[file] = now
		}
		cp := *c
		candidates = append(candidates, &cp)
	}
	sort.Slice(candidates, func(i, j int) bool { return candidates[i].Used.Before(candidates[j].Used) })
	var doomed []*mediaCopy
	for _, c := range candidates {
		if s.cfg.GCGrace < 0 || now.Sub(s.unused[c.File]) >= s.cfg.GCGrace {
			doomed = append(doomed, c)
			total -= c.Size
		}
	}
	for _, c := range candidates {
		if b := s.cfg.MaxFolderSize; b <= 0 || total <= b {
			break
		}
		if !slices.Contains(doomed, c) {
			doomed = append(doomed, c)
			total -= c.Size
		}
	}
	for _, c := range doomed {
		s.deleting[c.File] = false
	}
	return doomed
}

// reprieve checks a chosen copy again just before its delete and reports
// whether it stays: no longer recorded or marked, held by an insert, used
// since the choice, or referenced in refs (read after the mark; refsErr:
// they could not be read, and every copy stays). A copy that goes is
// marked as being deleted, which lookup no longer takes back.
func (s *MediaService) reprieve(c *mediaCopy, refs map[string]bool, refsErr error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, recorded := s.copies[c.File]
	_, marked := s.deleting[c.File]
	if refsErr != nil || !marked || !recorded || refs[c.File] || s.busy[c.File] > 0 || cur.Used.After(c.Used) {
		if marked {
			delete(s.deleting, c.File)
		}
		if refs[c.File] {
			delete(s.unused, c.File)
		}
		return true
	}
	s.deleting[c.File] = true
	return false
}

// Run collects every interval (positive) until ctx ends.
func (s *MediaService) Run(ctx context.Context, inv *Inventory, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.Collect(ctx, inv); err != nil {
				s.log.Debug("virtual media collection skipped", "err", err)
			}
		}
	}
}
