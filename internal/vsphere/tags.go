package vsphere

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/config"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
)

// Tag is a vSphere tag by its category's name and its own.
type Tag = config.Tag

// tagReader answers which VMs carry a tag. Tags live in vCenter's vAPI
// (REST) tagging service, not in managed-object properties, so the
// property collector cannot watch them: each question is a call. The REST
// session is a login of its own, with the same account, and goes through
// the same failed-login cap as the SOAP one; a tag's id is looked up once
// (see lookup).
type tagReader struct {
	c *Client

	// sem lets one caller at a time use rc and ids; a channel, so that a
	// caller waiting behind a slow tagging service gives up with its
	// context.
	sem chan struct{}
	rc  *rest.Client
	ids map[Tag]string
	// names are categories' and tags' names by id, read at namesAt.
	names   map[string]string
	namesAt time.Time
}

func newTagReader(c *Client) *tagReader {
	return &tagReader{c: c, sem: make(chan struct{}, 1), ids: map[Tag]string{}, names: map[string]string{}}
}

// lock takes sem within ctx.
func (r *tagReader) lock(ctx context.Context) error {
	select {
	case r.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("vCenter's tagging service busy with another request: %w", machine.ErrUnavailable)
	}
}

func (r *tagReader) unlock() { <-r.sem }

// attached returns the VMs that carry t, by reference without its server
// GUID (ref). A tag or category that does not exist is
// machine.ErrInvalidArgument; a session vCenter forgot is replaced once.
// Each call has a deadline, so that a hung tagging service holds neither
// the enroller nor an API request for long.
func (r *tagReader) attached(ctx context.Context, t Tag) (map[types.ManagedObjectReference]bool, error) {
	if err := r.lock(ctx); err != nil {
		return nil, err
	}
	defer r.unlock()
	vms, err := r.attachedLocked(ctx, t)
	if err != nil && !errors.Is(err, machine.ErrInvalidArgument) && !errors.Is(err, context.DeadlineExceeded) && r.expired(ctx) {
		vms, err = r.attachedLocked(ctx, t)
	}
	if err != nil && !errors.Is(err, machine.ErrInvalidArgument) {
		err = fmt.Errorf("tag %s: vCenter's tagging service: %w", t, mapError(err))
	}
	return vms, err
}

// expired reports (and forgets) a session vCenter no longer knows: after
// a failed call, since the tags package words some failures as text, a
// 401 among them.
func (r *tagReader) expired(ctx context.Context) bool {
	if r.rc == nil {
		return false
	}
	sctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if s, err := r.rc.Session(sctx); err != nil || s != nil {
		return false
	}
	r.rc = nil
	return true
}

func (r *tagReader) attachedLocked(ctx context.Context, t Tag) (map[types.ManagedObjectReference]bool, error) {
	notFound := fmt.Errorf("tag %s not found (create it in vCenter, or fix the category or name): %w", t, machine.ErrInvalidArgument)
	rc, err := r.client(ctx)
	if err != nil {
		return nil, err
	}
	m := tags.NewManager(rc)
	id, ok := r.ids[t]
	if !ok {
		id, err = r.lookup(ctx, m, t)
		if errors.Is(err, machine.ErrInvalidArgument) {
			return nil, notFound
		}
		if err != nil {
			return nil, err
		}
		r.ids[t] = id
	}
	objs, err := within(ctx, func(ctx context.Context) ([]mo.Reference, error) { return m.ListAttachedObjects(ctx, id) })
	if rest.IsStatusError(err, http.StatusNotFound) {
		delete(r.ids, t) // deleted, and perhaps created again under a new id
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	vms := map[types.ManagedObjectReference]bool{}
	for _, o := range objs {
		if ref := o.Reference(); ref.Type == "VirtualMachine" {
			vms[bare(ref)] = true
		}
	}
	return vms, nil
}

// bare is ref without its server GUID, which the tagging service and the
// property collector may not agree on sending.
func bare(ref types.ManagedObjectReference) types.ManagedObjectReference {
	return types.ManagedObjectReference{Type: ref.Type, Value: ref.Value}
}

// namesFor is how long the names of categories and tags are kept: a
// category or tag renamed in vCenter is found under its new name after
// that.
const namesFor = 5 * time.Minute

// lookup finds t's id (machine.ErrInvalidArgument when there is none).
// The names of the categories and tags it reads are kept (by id, for
// namesFor), so that looking again for a tag not created yet costs two
// calls (list the categories, list the category's tags) and one per new
// category or tag, not one per category and tag every round; a lookup
// cut short by a deadline goes on from there the next time. Each call has
// callTimeout.
func (r *tagReader) lookup(ctx context.Context, m *tags.Manager, t Tag) (string, error) {
	if time.Since(r.namesAt) > namesFor {
		r.names, r.namesAt = map[string]string{}, time.Now()
	}
	cats, err := within(ctx, m.ListCategories)
	if err != nil {
		return "", err
	}
	cat, err := r.named(cats, t.Category, func(id string) (string, error) {
		c, err := within(ctx, func(ctx context.Context) (*tags.Category, error) { return m.GetCategory(ctx, id) })
		if err != nil {
			return "", err
		}
		return c.Name, nil
	})
	if err != nil {
		return "", err
	}
	ids, err := within(ctx, func(ctx context.Context) ([]string, error) { return m.ListTagsForCategory(ctx, cat) })
	if err != nil {
		return "", err
	}
	return r.named(ids, t.Name, func(id string) (string, error) {
		tag, err := within(ctx, func(ctx context.Context) (*tags.Tag, error) { return m.GetTag(ctx, id) })
		if err != nil {
			return "", err
		}
		return tag.Name, nil
	})
}

// within runs one tagging-service call under callTimeout.
func within[T any](ctx context.Context, call func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return call(ctx)
}

// named is the id among ids whose name is name, reading (get) the names
// not known yet.
func (r *tagReader) named(ids []string, name string, get func(id string) (string, error)) (string, error) {
	for _, id := range ids {
		n, ok := r.names[id]
		if !ok {
			var err error
			if n, err = get(id); err != nil {
				return "", err
			}
			r.names[id] = n
		}
		if n == name {
			return id, nil
		}
	}
	return "", machine.ErrInvalidArgument
}

// client is the logged-in REST client, logging in when there is none.
func (r *tagReader) client(ctx context.Context) (*rest.Client, error) {
	if r.rc != nil {
		return r.rc, nil
	}
	if err := r.c.Status(); err != nil {
		return nil, err
	}
	if when, ok := r.c.gate.allow(); !ok {
		return nil, r.c.postponed(when)
	}
	rc := rest.NewClient(r.c.vim)
	lctx, cancel := context.WithTimeout(ctx, loginTimeout)
	defer cancel()
	if err := rc.Login(lctx, url.UserPassword(r.c.opts.Username, r.c.opts.Password)); err != nil {
		r.c.gate.record(err)
		return nil, r.c.explain(err, true)
	}
	r.rc = rc
	return rc, nil
}

// logout ends the REST session, if there is one.
func (r *tagReader) logout(ctx context.Context) error {
	if err := r.lock(ctx); err != nil {
		return err
	}
	defer r.unlock()
	if r.rc == nil {
		return nil
	}
	err := r.rc.Logout(ctx)
	r.rc = nil
	return err
}
