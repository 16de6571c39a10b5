package vsphere

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/vmware/govmomi/vapi/rest"
	"github.com/vmware/govmomi/vapi/tags"
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
// (finding it by name takes a call per tag of its category).
type tagReader struct {
	c *Client

	mu  sync.Mutex // one call at a time; guards rc and ids
	rc  *rest.Client
	ids map[Tag]string
}

// attached returns the VMs that carry t. A tag or category that does not
// exist is machine.ErrInvalidArgument; a session vCenter forgot is
// replaced once. Each call has a deadline, so that a hung tagging
// service holds neither the enroller nor an API request (which wait for
// the lock) for long.
func (r *tagReader) attached(ctx context.Context, t Tag) (map[types.ManagedObjectReference]bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	vms, err := r.attachedLocked(ctx, t)
	if rest.IsStatusError(err, http.StatusUnauthorized) {
		r.rc = nil
		vms, err = r.attachedLocked(ctx, t)
	}
	if err != nil && !errors.Is(err, machine.ErrInvalidArgument) {
		err = fmt.Errorf("tag %s: vCenter's tagging service: %w", t, mapError(err))
	}
	return vms, err
}

func (r *tagReader) attachedLocked(ctx context.Context, t Tag) (map[types.ManagedObjectReference]bool, error) {
	rc, err := r.client(ctx)
	if err != nil {
		return nil, err
	}
	m := tags.NewManager(rc)
	id, ok := r.ids[t]
	if !ok {
		lctx, cancel := context.WithTimeout(ctx, lookupTimeout)
		id, err = lookupTag(lctx, m, t)
		cancel()
		if err != nil {
			return nil, err
		}
		r.ids[t] = id
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	objs, err := m.ListAttachedObjects(cctx, id)
	if rest.IsStatusError(err, http.StatusNotFound) {
		delete(r.ids, t) // deleted, and perhaps created again under a new id
		return nil, fmt.Errorf("tag %s not found: %w", t, machine.ErrInvalidArgument)
	}
	if err != nil {
		return nil, err
	}
	vms := map[types.ManagedObjectReference]bool{}
	for _, o := range objs {
		if ref := o.Reference(); ref.Type == "VirtualMachine" {
			vms[ref] = true
		}
	}
	return vms, nil
}

// lookupTimeout bounds finding a tag's id, once per tag: by name that is
// a call per category and one per tag of its category.
const lookupTimeout = time.Minute

// lookupTag finds t's id.
func lookupTag(ctx context.Context, m *tags.Manager, t Tag) (string, error) {
	notFound := fmt.Errorf("tag %s not found (create it in vCenter, or fix the category or name): %w", t, machine.ErrInvalidArgument)
	cats, err := m.GetCategories(ctx)
	if err != nil {
		return "", err
	}
	for _, c := range cats {
		if c.Name != t.Category {
			continue
		}
		ts, err := m.GetTagsForCategory(ctx, c.ID)
		if err != nil {
			return "", err
		}
		for _, tag := range ts {
			if tag.Name == t.Name {
				return tag.ID, nil
			}
		}
		return "", notFound
	}
	return "", notFound
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
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.rc == nil {
		return nil
	}
	err := r.rc.Logout(ctx)
	r.rc = nil
	return err
}
