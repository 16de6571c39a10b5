package vsphere

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/fault"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/property"
	"github.com/vmware/govmomi/view"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// ISO 9660 puts its first volume descriptor at byte 32768 (16 sectors of
// 2048), "CD001" after a type byte: the check that a URL serves an ISO
// image, and not an error page, before anything reaches the datastore.
const (
	isoMagicOffset = 32769
	isoMagic       = "CD001"
	isoMinSize     = 32768 + 2048
)

// redact shows an image URL without its secrets: the password and the
// query, which in signed URLs carries the token.
func redact(u *url.URL) string {
	r := *u
	if r.RawQuery != "" {
		r.RawQuery = "…"
	}
	r.Fragment, r.RawFragment = "", ""
	return r.Redacted()
}

// redactError is err as it may be logged: every URL in it shown as redact
// shows it. Transport errors (*url.Error) carry the URL they fetched, the
// image's or a redirect's, with its query: a signed URL's token
// (X-Amz-Signature, sig=...) would reach the log. The result wraps err, so
// errors.Is and errors.As see through it. This and redact clean image URLs
// for the machine's errors and logs; the Redfish service scrubs its answers
// once more, as it does every machine error it shows a client.
func redactError(err error, u *url.URL) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := func(raw string) {
		if raw == "" {
			return
		}
		shown := "<url>"
		if pu, perr := url.Parse(raw); perr == nil {
			shown = redact(pu)
		}
		// url.Error quotes its URL (%q), which escapes some characters.
		msg = strings.ReplaceAll(msg, strconv.Quote(raw), strconv.Quote(shown))
		msg = strings.ReplaceAll(msg, raw, shown)
	}
	for e := err; e != nil; {
		var ue *url.Error
		if !errors.As(e, &ue) {
			break
		}
		clean(ue.URL)
		e = ue.Err // a url.Error may wrap another (a redirect's)
	}
	if u != nil {
		clean(u.String())
	}
	if msg == err.Error() {
		return err
	}
	return &redactedError{msg: msg, err: err}
}

// redactedError is an error with its URLs redacted in its text only.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// Media implements machine.Machine from the VM's CD-ROM: inserted while it
// is connected to the image the bridge put there.
func (v *VM) Media(context.Context) (machine.Media, error) {
	vm, err := v.snapshot()
	if err != nil {
		return machine.Media{}, err
	}
	rec := v.record()
	out := machine.Media{VerifyCertificate: v.verify(rec)}
	cd, err := object.VirtualDeviceList(vm.Config.Hardware.Device).FindCdrom("")
	if err != nil || rec.MediaFile == "" {
		return out, nil
	}
	iso, ok := cd.Backing.(*types.VirtualCdromIsoBackingInfo)
	if !ok || iso.FileName != rec.MediaFile {
		return out, nil
	}
	out.Inserted, out.Image = true, rec.MediaURL
	return out, nil
}

func (v *VM) media() *MediaService {
	if v.opts.Media != nil {
		return v.opts.Media
	}
	return defaultMedia()
}

// verify is the drive's VerifyCertificate: its own, or the default.
func (v *VM) verify(rec Record) bool {
	if rec.MediaVerify != nil {
		return *rec.MediaVerify
	}
	return v.media().cfg.VerifyCertificate
}

// SetMediaVerify implements machine.Machine.
func (v *VM) SetMediaVerify(ctx context.Context, verify bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, err := v.snapshot(); err != nil {
		return err
	}
	rec := v.record()
	rec.MediaVerify = &verify
	if err := v.persistRecord(rec); err != nil {
		return err
	}
	v.log.Info("virtual media certificate verification set", "verify", verify)
	return nil
}

// InsertMedia implements machine.Machine: it streams the image into the
// media datastore folder under a temporary name, computing its SHA-256,
// checks it and moves it to a name made of the URL's and the content's
// hashes, then connects it to the VM's CD-ROM (adding one when the VM has
// none). A copy is reused without a transfer only when the source proves
// it unchanged (a 304 to a conditional request with the strong ETag or the
// Last-Modified recorded with the copy); a fetched image that turns out
// identical to a copy replaces nothing. A later insert or an eject of the
// VM cancels this one; power and boot actions go on meanwhile.
func (v *VM) InsertMedia(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("image: not an http or https URL: %w", machine.ErrInvalidArgument)
	}
	s := v.media()
	opCtx, done, err := s.begin(ctx, v)
	defer done()
	if err != nil {
		return err
	}
	if _, err := v.snapshot(); err != nil {
		return err
	}
	ds, err := v.mediaDatastore(opCtx)
	if err != nil {
		return v.vcenterError(opCtx, "find the media datastore", err)
	}
	file, err := s.fetch(opCtx, v, ds, u, v.verify(v.record()))
	if err != nil {
		return err
	}
	dsPath := ds.Path(file)
	defer s.inflight(dsPath, -1) // fetch holds the copy until it is connected
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := opCtx.Err(); err != nil {
		return s.cancelled(opCtx, u)
	}
	old := v.record()
	rec := old
	rec.MediaURL, rec.MediaFile = rawURL, dsPath
	// The state first: a state that cannot be saved changes nothing (and
	// is answered 500). A crash between the two leaves a record whose file
	// the CD-ROM does not show, which Media reports as not inserted.
	if err := v.persist(rec); err != nil {
		v.log.Error("virtual media not inserted: state not saved", "err", err)
		return fmt.Errorf("vm %s: virtual media not inserted: the bridge's state could not be saved", v.name())
	}
	if err := v.connectISO(opCtx, dsPath); err != nil {
		v.persistBack(old)
		return v.vcenterError(opCtx, "connect the image", err)
	}
	v.setRecord(rec)
	v.log.Info("virtual media inserted", "image", redact(u), "file", dsPath)
	return nil
}

// vcenterError logs a vCenter failure during a media change and returns
// an error fit for a client: its kind, without URLs or fault text.
func (v *VM) vcenterError(ctx context.Context, what string, err error) error {
	if ctx.Err() != nil {
		return v.media().cancelled(ctx, nil)
	}
	v.log.Error("virtual media: vCenter failed", "step", what, "err", err)
	err = mapError(err)
	for _, kind := range []error{machine.ErrNotFound, machine.ErrInvalidState, machine.ErrUnsupported, machine.ErrInvalidArgument, machine.ErrBusy} {
		if errors.Is(err, kind) {
			return fmt.Errorf("vm %s: vCenter could not %s: %w", v.name(), what, kind)
		}
	}
	return fmt.Errorf("vm %s: vCenter could not %s: %w", v.name(), what, machine.ErrUnavailable)
}

// imageError is a refused image: Error names the class of failure, fit
// for a client; cause, for the log, may name internal addresses.
type imageError struct {
	image, class string
	cause        error
}

func (e *imageError) Error() string { return "image " + e.image + ": " + e.class }
func (e *imageError) Unwrap() error { return machine.ErrInvalidArgument }

// refuse logs why an image was refused and returns the client's error.
func (s *MediaService) refuse(v *VM, u *url.URL, class string, cause error) error {
	attrs := []any{"image", redact(u), "class", class}
	cause = redactError(cause, u)
	if cause != nil {
		attrs = append(attrs, "err", cause)
	}
	v.log.Warn("virtual media refused", attrs...)
	return &imageError{image: redact(u), class: class, cause: cause}
}

// fetch brings the image at u to the datastore and returns its file name
// there (relative to the datastore), held (see inflight): the caller
// releases it once the copy is connected.
func (s *MediaService) fetch(ctx context.Context, v *VM, ds *object.Datastore, u *url.URL, verify bool) (string, error) {
	key := urlKey(u.String())
	prev := s.reusable(ctx, ds, key)
	// The stall timer covers connecting, the headers and every read: no
	// byte for StallTimeout cancels the transfer, the upload included.
	fctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(s.cfg.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()
	resp, err := s.request(fctx, v, u, prev, verify)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotModified && prev != nil {
		s.touch(prev)
		s.obs.MediaReused()
		v.log.Info("virtual media unchanged at its source; copy reused", "image", redact(u), "file", prev.File)
		return strings.TrimPrefix(prev.File, "["+ds.Name()+"] "), nil
	}
	if err := s.acceptable(v, u, resp); err != nil {
		return "", err
	}
	body := &streamReader{r: resp.Body, stall: stall, every: s.cfg.StallTimeout, sum: sha256.New(), obs: s.obs,
		total: resp.ContentLength, log: v.log, name: redact(u), last: time.Now()}
	head := make([]byte, isoMagicOffset+len(isoMagic))
	if _, err := io.ReadFull(body, head); err != nil {
		return "", s.transferError(fctx, v, u, err)
	}
	if string(head[isoMagicOffset:]) != isoMagic {
		return "", s.refuse(v, u, "not an ISO 9660 image", nil)
	}
	up, err := s.stage(fctx, v, ds, resp.ContentLength)
	if err != nil {
		return "", err
	}
	defer s.inflight(up.entry.File, -1)
	start := time.Now()
	final, moved := "", false
	err = s.store(fctx, v, u, up, io.MultiReader(bytes.NewReader(head), body), body)
	sum := hex.EncodeToString(body.sum.Sum(nil))
	if err == nil {
		final, moved, err = s.place(fctx, v, u, up, key, sum, resp)
	}
	if !moved {
		s.remove(context.WithoutCancel(ctx), v.inv.c, up.dc, up.entry)
		return final, err
	}
	v.log.Info("virtual media uploaded", "image", redact(u), "bytes", up.entry.Size, "sha256", sum, "took", time.Since(start).Round(time.Millisecond))
	return final, nil
}

// request asks u for the image, conditionally when prev (a copy of it,
// held) records validators. prev is released unless the source answers
// that it is unchanged.
func (s *MediaService) request(ctx context.Context, v *VM, u *url.URL, prev *mediaCopy, verify bool) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		if prev != nil {
			s.inflight(prev.File, -1)
		}
		return nil, s.refuse(v, u, "not a valid URL", nil)
	}
	if prev != nil {
		if prev.ETag != "" {
			req.Header.Set("If-None-Match", prev.ETag)
		} else {
			req.Header.Set("If-Modified-Since", prev.LastModified)
		}
	}
	resp, err := s.client(verify).Do(req)
	if prev != nil && (err != nil || resp.StatusCode != http.StatusNotModified) {
		s.inflight(prev.File, -1)
	}
	if err != nil {
		return nil, s.transferError(ctx, v, u, err)
	}
	return resp, nil
}

// acceptable refuses an answer that is not an image within the limits.
func (s *MediaService) acceptable(v *VM, u *url.URL, resp *http.Response) error {
	switch {
	case resp.StatusCode != http.StatusOK:
		return s.refuse(v, u, fmt.Sprintf("HTTP status %d", resp.StatusCode), nil)
	case resp.ContentLength > s.cfg.MaxImageSize:
		return s.refuse(v, u, "too large: over the limit of "+formatSize(s.cfg.MaxImageSize)+" (media.maxImageSize)", fmt.Errorf("announced %d bytes", resp.ContentLength))
	case resp.ContentLength < isoMinSize:
		// Also a body without Content-Length: the datastore upload needs
		// the length first.
		return s.refuse(v, u, "not an ISO image (too short, or no Content-Length)", fmt.Errorf("Content-Length %d", resp.ContentLength))
	}
	return nil
}

// upload is an image on its way to the datastore: its temporary copy.
type upload struct {
	ds    *object.Datastore
	dc    *object.Datacenter
	tmp   string // relative to the datastore
	entry *mediaCopy
}

// stage makes the media folder and records, held, the temporary copy of
// size bytes an upload is about to write: recorded before the first byte,
// a copy a crash cuts short is one the collector knows to be the bridge's.
func (s *MediaService) stage(ctx context.Context, v *VM, ds *object.Datastore, size int64) (*upload, error) {
	dc, err := find.NewFinder(v.inv.c.vim).Datacenter(ctx, ds.DatacenterPath)
	if err != nil {
		return nil, v.vcenterError(ctx, "find the datacenter", err)
	}
	if err := v.mkdir(ctx, ds, dc, s.cfg.Folder); err != nil {
		return nil, v.vcenterError(ctx, "make the media folder", err)
	}
	tmp := path.Join(s.cfg.Folder, "upload-"+rand.Text()+".tmp")
	entry := &mediaCopy{File: ds.Path(tmp), Datacenter: ds.DatacenterPath, Size: size, Created: s.now(), Used: s.now()}
	if err := s.record(entry); err != nil {
		v.log.Error("virtual media not uploaded: state not saved", "err", err)
		return nil, fmt.Errorf("vm %s: virtual media not uploaded: the bridge's state could not be saved", v.name())
	}
	s.inflight(entry.File, +1)
	return &upload{ds: ds, dc: dc, tmp: tmp, entry: entry}, nil
}

// store streams r (the image, read through body) into the temporary copy
// and checks that the datastore holds every byte.
func (s *MediaService) store(ctx context.Context, v *VM, u *url.URL, up *upload, r io.Reader, body *streamReader) error {
	size := up.entry.Size
	p := soap.DefaultUpload
	p.ContentLength = size
	s.obs.MediaUploads(+1)
	err := up.ds.Upload(ctx, r, up.tmp, &p)
	s.obs.MediaUploads(-1)
	if err != nil {
		if ctx.Err() != nil || body.err() != nil {
			return s.transferError(ctx, v, u, cmp.Or(body.err(), err))
		}
		return v.vcenterError(ctx, "store the image", err)
	}
	if body.n.Load() != size {
		return s.refuse(v, u, "not reachable (the transfer ended early)", fmt.Errorf("%d of %d bytes", body.n.Load(), size))
	}
	if info, err := up.ds.Stat(ctx, up.tmp); err != nil || info.GetFileInfo().FileSize != size {
		if err == nil {
			err = fmt.Errorf("%d bytes on the datastore, %d sent", info.GetFileInfo().FileSize, size)
		}
		return v.vcenterError(ctx, "store the image", err)
	}
	return nil
}

// place gives the stored image its final name, made of the URL's hash
// (key) and the content's (sum), and returns it, held. When a copy of the
// same bytes is there already, that copy is reused and the temporary one
// is left for the caller to remove (moved false).
func (s *MediaService) place(ctx context.Context, v *VM, u *url.URL, up *upload, key, sum string, resp *http.Response) (_ string, moved bool, _ error) {
	ds := up.ds
	final := path.Join(s.cfg.Folder, key[:16]+"-"+sum[:16]+".iso")
	existing := s.lookup(ds.Path(final))
	if existing != nil {
		if info, err := ds.Stat(ctx, final); err != nil || info.GetFileInfo().FileSize != existing.Size {
			// Deleted (or changed) behind the bridge's back: the new
			// copy takes its place.
			s.inflight(existing.File, -1)
			s.forget(existing)
			existing = nil
		}
	}
	if existing != nil {
		existing.ETag, existing.LastModified = validators(resp)
		s.touch(existing)
		s.obs.MediaReused()
		v.log.Info("virtual media identical to a copy on the datastore; copy reused", "image", redact(u), "file", existing.File)
		return final, false, nil
	}
	if err := s.move(ctx, v.inv.c, up.dc, ds.Path(up.tmp), ds.Path(final)); err != nil {
		return "", false, v.vcenterError(ctx, "move the image into place", err)
	}
	s.inflight(ds.Path(final), +1)
	s.forget(up.entry)
	fin := *up.entry
	fin.File, fin.Complete, fin.URLKey, fin.SHA256 = ds.Path(final), true, key, sum
	fin.ETag, fin.LastModified = validators(resp)
	if err := s.record(&fin); err != nil {
		v.log.Error("uploaded image not recorded: it will never be collected", "file", fin.File, "err", err)
	}
	return final, true, nil
}

// transferError classifies a failed transfer from the image's source.
func (s *MediaService) transferError(ctx context.Context, v *VM, u *url.URL, err error) error {
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errStalled):
		return s.refuse(v, u, "stalled: no data for "+s.cfg.StallTimeout.String(), err)
	case errors.Is(cause, errSuperseded), errors.Is(cause, errEjected), errors.Is(cause, context.Canceled) && ctx.Err() != nil:
		return s.cancelled(ctx, u)
	}
	return s.refuse(v, u, classifyFetch(err), err)
}

// cancelled is the answer of an insert another insert, an eject or its
// client cancelled.
func (s *MediaService) cancelled(ctx context.Context, u *url.URL) error {
	what := "the request ended"
	switch cause := context.Cause(ctx); {
	case errors.Is(cause, errSuperseded):
		what = "a later InsertMedia replaced it"
	case errors.Is(cause, errEjected):
		what = "an EjectMedia came first"
	}
	img := "image"
	if u != nil {
		img += " " + redact(u)
	}
	return fmt.Errorf("%s: insert cancelled: %s: %w", img, what, machine.ErrInvalidState)
}

func validators(resp *http.Response) (etag, lastModified string) {
	if e := resp.Header.Get("ETag"); e != "" && !strings.HasPrefix(e, "W/") && strings.HasPrefix(e, `"`) {
		etag = e
	}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		if _, err := http.ParseTime(lm); err == nil {
			lastModified = lm
		}
	}
	return etag, lastModified
}

func urlKey(raw string) string {
	sum := sha256.Sum256([]byte(raw))
	return hex.EncodeToString(sum[:])
}

func (v *VM) mkdir(ctx context.Context, ds *object.Datastore, dc *object.Datacenter, folder string) error {
	err := object.NewFileManager(v.inv.c.vim).MakeDirectory(ctx, ds.Path(folder), dc, true)
	if err != nil && !fault.Is(err, &types.FileAlreadyExists{}) {
		return err
	}
	return nil
}

// mediaDatastore is the configured datastore, or the VM's first one.
func (v *VM) mediaDatastore(ctx context.Context) (*object.Datastore, error) {
	vc := v.inv.c.vim
	var ref types.ManagedObjectReference
	if name := v.media().cfg.Datastore; name != "" {
		m := view.NewManager(vc)
		cv, err := m.CreateContainerView(ctx, vc.ServiceContent.RootFolder, []string{"Datastore"}, true)
		if err != nil {
			return nil, err
		}
		defer func() {
			if err := cv.Destroy(context.WithoutCancel(ctx)); err != nil {
				v.log.Debug("datastore view not destroyed; vCenter drops it with the session", "err", mapError(err))
			}
		}()
		var all []mo.Datastore
		if err := cv.Retrieve(ctx, []string{"Datastore"}, []string{"name"}, &all); err != nil {
			return nil, err
		}
		for _, d := range all {
			if d.Name == name {
				ref = d.Self
			}
		}
		if ref.Value == "" {
			return nil, fmt.Errorf("media datastore %q: %w", name, machine.ErrNotFound)
		}
	} else {
		var vm mo.VirtualMachine
		if err := property.DefaultCollector(vc).RetrieveOne(ctx, v.obj.Reference(), []string{"datastore"}, &vm); err != nil {
			return nil, err
		}
		if len(vm.Datastore) == 0 {
			return nil, fmt.Errorf("vm %s has no datastore for media: %w", v.name(), machine.ErrInvalidState)
		}
		ref = vm.Datastore[0]
	}
	ds := object.NewDatastore(vc, ref)
	if err := ds.FindInventoryPath(ctx); err != nil {
		return nil, err
	}
	return ds, nil
}

// ownCdrom is a copy of a snapshot's CD-ROM to change: InsertIso and
// EjectIso write the device they are given, and a snapshot's devices are
// read by others (Media, Redfish) without a lock.
func ownCdrom(cd *types.VirtualCdrom) *types.VirtualCdrom {
	c := *cd
	return &c
}

// connectISO points the VM's CD-ROM at dsPath and connects it.
func (v *VM) connectISO(ctx context.Context, dsPath string) error {
	vm, err := v.snapshot()
	if err != nil {
		return err
	}
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	cd, err := devices.FindCdrom("")
	add := err != nil
	if add {
		ide, err := devices.FindIDEController("")
		if err != nil {
			return fmt.Errorf("vm %s has no CD-ROM and no IDE controller to add one: %w", v.name(), machine.ErrInvalidState)
		}
		if cd, err = devices.CreateCdrom(ide); err != nil {
			return fmt.Errorf("vm %s: %w", v.name(), err)
		}
	}
	if !add {
		cd = ownCdrom(cd)
	}
	cd = devices.InsertIso(cd, dsPath)
	cd.Connectable = &types.VirtualDeviceConnectInfo{Connected: true, StartConnected: true, AllowGuestControl: true}
	v.inv.sending(v.obj.Reference())
	if add {
		err = v.obj.AddDevice(ctx, cd)
	} else {
		err = v.obj.EditDevice(ctx, cd)
	}
	if err != nil {
		return err
	}
	v.shown(ctx, "insert")
	return nil
}

// shown waits for the inventory to show the drive vCenter just changed,
// so that the next read (Media) sees it. vCenter made the change, so the
// answer does not depend on it: a wait that ends first is logged.
func (v *VM) shown(ctx context.Context, change string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), inventoryLag)
	defer cancel()
	if err := v.inv.Refresh(rctx, v.obj.Reference()); err != nil {
		v.log.Warn("virtual media changed; reads may show the drive as it was for a moment", "change", change, "err", err)
	}
}

// persistBack saves rec, the record before a media change vCenter did not
// make. A failure is logged: the saved record then names an image the
// CD-ROM does not show, which Media reports as not inserted.
func (v *VM) persistBack(rec Record) {
	if err := v.persist(rec); err != nil {
		v.log.Error("virtual media: state not put back after a change that failed", "err", err)
	}
}

// EjectMedia implements machine.Machine. It cancels an insert in progress
// (which then answers that it was cancelled) and waits for it to end.
func (v *VM) EjectMedia(ctx context.Context) error {
	if err := v.media().stop(ctx, v); err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	vm, err := v.snapshot()
	if err != nil {
		return err
	}
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	cd, err := devices.FindCdrom("")
	if err != nil {
		return nil // no drive, nothing inserted
	}
	old := v.record()
	rec := old
	rec.MediaURL, rec.MediaFile = "", ""
	if old.MediaFile != "" {
		if err := v.persist(rec); err != nil {
			v.log.Error("virtual media not ejected: state not saved", "err", err)
			return fmt.Errorf("vm %s: virtual media not ejected: the bridge's state could not be saved", v.name())
		}
	}
	if _, iso := cd.Backing.(*types.VirtualCdromIsoBackingInfo); iso || old.MediaFile != "" {
		cd = devices.EjectIso(ownCdrom(cd))
		cd.Connectable = &types.VirtualDeviceConnectInfo{Connected: false, StartConnected: false, AllowGuestControl: true}
		v.inv.sending(v.obj.Reference())
		if err := v.obj.EditDevice(ctx, cd); err != nil {
			if old.MediaFile != "" {
				v.persistBack(old)
			}
			return v.vcenterError(ctx, "eject", err)
		}
		v.shown(ctx, "eject")
	}
	if old.MediaFile != "" {
		v.setRecord(rec)
		v.log.Info("virtual media ejected")
	}
	return nil
}

// streamReader counts, hashes and times what the source sends: each read
// with data pushes the stall timer back, and an operator watching a slow
// deployment sees a progress line every 10 s.
type streamReader struct {
	r     io.Reader
	stall *time.Timer
	every time.Duration
	sum   hash.Hash
	obs   MediaObserver
	n     atomic.Int64
	// failed is the source's read error; the transport's goroutine reads
	// the body, so it is set and read under mu.
	mu     sync.Mutex
	failed error
	total  int64
	log    interface{ Info(string, ...any) }
	name   string
	last   time.Time
}

func (p *streamReader) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

func (p *streamReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.stall.Reset(p.every)
		p.sum.Write(b[:n])
		p.obs.MediaBytes(n)
	}
	if err != nil && err != io.EOF {
		p.mu.Lock()
		p.failed = err
		p.mu.Unlock()
	}
	done := p.n.Add(int64(n))
	if time.Since(p.last) >= 10*time.Second {
		p.last = time.Now()
		p.log.Info("virtual media upload", "image", p.name, "percent", 100*done/max(p.total, 1), "bytes", done)
	}
	return n, err
}
