package vsphere

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
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

// MediaFolder is the datastore folder inserted ISO images go to by default.
const MediaFolder = "ipmi-vmware-bridge"

// ISO 9660 puts its first volume descriptor at byte 32768 (16 sectors of
// 2048), "CD001" after a type byte: the check that a URL serves an ISO
// image, and not an error page, before anything reaches the datastore.
const (
	isoMagicOffset = 32769
	isoMagic       = "CD001"
	isoMinSize     = 32768 + 2048
)

// mediaHTTP fetches images. No overall timeout: an installer ISO takes
// minutes; the request context bounds it.
var mediaHTTP = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	ResponseHeaderTimeout: 30 * time.Second,
	TLSHandshakeTimeout:   10 * time.Second,
}}

// redact shows an image URL without its secrets: the password and the
// query, which in signed URLs carries the token.
func redact(u *url.URL) string {
	r := *u
	if r.RawQuery != "" {
		r.RawQuery = "…"
	}
	return r.Redacted()
}

// Media implements machine.Machine from the VM's CD-ROM: inserted while it
// is connected to the image the bridge put there.
func (v *VM) Media(context.Context) (machine.Media, error) {
	vm, err := v.snapshot()
	if err != nil {
		return machine.Media{}, err
	}
	rec := v.record()
	cd, err := object.VirtualDeviceList(vm.Config.Hardware.Device).FindCdrom("")
	if err != nil || rec.MediaFile == "" {
		return machine.Media{}, nil
	}
	iso, ok := cd.Backing.(*types.VirtualCdromIsoBackingInfo)
	if !ok || iso.FileName != rec.MediaFile {
		return machine.Media{}, nil
	}
	return machine.Media{Inserted: true, Image: rec.MediaURL}, nil
}

// InsertMedia implements machine.Machine: it streams the image from the URL
// into the media datastore folder (no temporary file; an image of the same
// URL and size already there is reused), then connects it to the VM's
// CD-ROM, adding one when the VM has none.
func (v *VM) InsertMedia(ctx context.Context, rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("image: not an http or https URL: %w", machine.ErrInvalidArgument)
	}
	// The download can take minutes: it holds only the media lock, so that
	// power actions, boot changes and every read go on meanwhile.
	v.mediaMu.Lock()
	defer v.mediaMu.Unlock()
	if _, err := v.snapshot(); err != nil {
		return err
	}
	ds, err := v.mediaDatastore(ctx)
	if err != nil {
		return err
	}
	folder := v.opts.MediaFolder
	if folder == "" {
		folder = MediaFolder
	}
	sum := sha256.Sum256([]byte(rawURL))
	file := path.Join(folder, hex.EncodeToString(sum[:8])+".iso")
	if err := v.fetch(ctx, ds, u, folder, file); err != nil {
		return err
	}
	dsPath := ds.Path(file)
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.connectISO(ctx, dsPath); err != nil {
		return err
	}
	rec := v.record()
	rec.MediaURL, rec.MediaFile = rawURL, dsPath
	v.save(rec)
	v.log.Info("virtual media inserted", "image", redact(u), "file", dsPath)
	return nil
}

// fetch copies the image at u to file on ds unless a file of the same size
// is there already.
func (v *VM) fetch(ctx context.Context, ds *object.Datastore, u *url.URL, folder, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("image %s: %v: %w", redact(u), err, machine.ErrInvalidArgument)
	}
	resp, err := mediaHTTP.Do(req)
	if err != nil {
		// url.Error repeats the URL, query and all: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("image %s: %v: %w", redact(u), err, machine.ErrInvalidArgument)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("image %s: HTTP %s: %w", redact(u), resp.Status, machine.ErrInvalidArgument)
	case resp.ContentLength < isoMinSize:
		return fmt.Errorf("image %s: %d bytes is no ISO image (or the server sent no Content-Length): %w", redact(u), resp.ContentLength, machine.ErrInvalidArgument)
	}
	size := resp.ContentLength
	if info, err := ds.Stat(ctx, file); err == nil && info.GetFileInfo().FileSize == size {
		v.log.Info("virtual media already on the datastore; reused", "image", redact(u), "bytes", size)
		return nil
	}
	head := make([]byte, isoMagicOffset+len(isoMagic))
	if _, err := io.ReadFull(resp.Body, head); err != nil {
		return fmt.Errorf("image %s: %v: %w", redact(u), err, machine.ErrInvalidArgument)
	}
	if string(head[isoMagicOffset:]) != isoMagic {
		return fmt.Errorf("image %s: no ISO 9660 volume descriptor: %w", redact(u), machine.ErrInvalidArgument)
	}
	if err := v.mkdir(ctx, ds, folder); err != nil {
		return err
	}
	body := &progressReader{r: io.MultiReader(bytes.NewReader(head), resp.Body), total: size, log: v.log, name: redact(u), last: time.Now()}
	p := soap.DefaultUpload
	p.ContentLength = size
	start := time.Now()
	if err := ds.Upload(ctx, body, file, &p); err != nil {
		return fmt.Errorf("image %s: upload to %s: %w", redact(u), ds.Path(file), mapError(err))
	}
	v.log.Info("virtual media uploaded", "image", redact(u), "bytes", size, "took", time.Since(start))
	return nil
}

func (v *VM) mkdir(ctx context.Context, ds *object.Datastore, folder string) error {
	dc, err := find.NewFinder(v.inv.c.vim).Datacenter(ctx, ds.DatacenterPath)
	if err != nil {
		return fmt.Errorf("vm %s: datacenter of %s: %w", v.name(), ds.Name(), mapError(err))
	}
	err = object.NewFileManager(v.inv.c.vim).MakeDirectory(ctx, ds.Path(folder), dc, true)
	if err != nil && !fault.Is(err, &types.FileAlreadyExists{}) {
		return fmt.Errorf("vm %s: make %s: %w", v.name(), ds.Path(folder), mapError(err))
	}
	return nil
}

// mediaDatastore is the configured datastore, or the VM's first one.
func (v *VM) mediaDatastore(ctx context.Context) (*object.Datastore, error) {
	vc := v.inv.c.vim
	var ref types.ManagedObjectReference
	if name := v.opts.MediaDatastore; name != "" {
		m := view.NewManager(vc)
		cv, err := m.CreateContainerView(ctx, vc.ServiceContent.RootFolder, []string{"Datastore"}, true)
		if err != nil {
			return nil, mapError(err)
		}
		defer func() { _ = cv.Destroy(context.WithoutCancel(ctx)) }()
		var all []mo.Datastore
		if err := cv.Retrieve(ctx, []string{"Datastore"}, []string{"name"}, &all); err != nil {
			return nil, mapError(err)
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
			return nil, mapError(err)
		}
		if len(vm.Datastore) == 0 {
			return nil, fmt.Errorf("vm %s has no datastore for media: %w", v.name(), machine.ErrInvalidState)
		}
		ref = vm.Datastore[0]
	}
	ds := object.NewDatastore(vc, ref)
	if err := ds.FindInventoryPath(ctx); err != nil {
		return nil, mapError(err)
	}
	return ds, nil
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
	cd = devices.InsertIso(cd, dsPath)
	cd.Connectable = &types.VirtualDeviceConnectInfo{Connected: true, StartConnected: true, AllowGuestControl: true}
	if add {
		err = v.obj.AddDevice(ctx, cd)
	} else {
		err = v.obj.EditDevice(ctx, cd)
	}
	if err != nil {
		return fmt.Errorf("vm %s: connect %s: %w", v.name(), dsPath, mapError(err))
	}
	return v.inv.Refresh(ctx, v.obj.Reference())
}

// EjectMedia implements machine.Machine.
func (v *VM) EjectMedia(ctx context.Context) error {
	v.mediaMu.Lock()
	defer v.mediaMu.Unlock()
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
	rec := v.record()
	if _, iso := cd.Backing.(*types.VirtualCdromIsoBackingInfo); iso || rec.MediaFile != "" {
		cd = devices.EjectIso(cd)
		cd.Connectable = &types.VirtualDeviceConnectInfo{Connected: false, StartConnected: false, AllowGuestControl: true}
		if err := v.obj.EditDevice(ctx, cd); err != nil {
			return fmt.Errorf("vm %s: eject: %w", v.name(), mapError(err))
		}
		_ = v.inv.Refresh(ctx, v.obj.Reference())
	}
	if rec.MediaFile != "" {
		rec.MediaURL, rec.MediaFile = "", ""
		v.save(rec)
		v.log.Info("virtual media ejected")
	}
	return nil
}

// progressReader logs an upload's progress every 10 s, so that an operator
// watching a slow deployment sees it move.
type progressReader struct {
	r     io.Reader
	n     atomic.Int64
	total int64
	log   interface{ Info(string, ...any) }
	name  string
	last  time.Time
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	done := p.n.Add(int64(n))
	if time.Since(p.last) >= 10*time.Second {
		p.last = time.Now()
		p.log.Info("virtual media upload", "image", p.name, "percent", 100*done/max(p.total, 1), "bytes", done)
	}
	return n, err
}
