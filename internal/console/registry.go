package console

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

var errRejected = errors.New("VM refused")

// Lookup returns the console of the VM with this vCenter instance UUID or
// BIOS UUID (in any case, with or without separators), or nil. An
// instance UUID is tried first: clones may share a BIOS UUID.
func (cc *Concentrator) Lookup(uuid string) *Console {
	u := NormalizeUUID(uuid)
	if u == "" {
		return nil
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if c := cc.byInstance[u]; c != nil {
		return c
	}
	return cc.byBIOS[u]
}

// Find returns the console the concentrator keeps for the VM id names, or
// nil. It never creates one, unlike Register, so read paths (a Redfish
// GET, a console log download) neither make consoles for VMs whose hosts
// never connect nor push real consoles out past MaxConsoles. It matches
// as a host connection is matched: by instance UUID, then by BIOS UUID
// unless both sides know instance UUIDs that differ (two clones). UUIDs
// may be in any case, with or without separators.
func (cc *Concentrator) Find(id Identity) *Console {
	id.InstanceUUID, id.BIOSUUID = NormalizeUUID(id.InstanceUUID), NormalizeUUID(id.BIOSUUID)
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.findLocked(id)
}

// Consoles returns every console kept.
func (cc *Concentrator) Consoles() []*Console {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	out := make([]*Console, 0, len(cc.consoles))
	for c := range cc.consoles {
		out = append(out, c)
	}
	return out
}

// Remove forgets the console Lookup(uuid) finds, for a VM that no longer
// exists: its host connections and readers are closed. It reports whether
// there was one.
func (cc *Concentrator) Remove(uuid string) bool {
	c := cc.Lookup(uuid)
	if c == nil {
		return false
	}
	cc.mu.Lock()
	cc.forgetLocked(c)
	cc.mu.Unlock()
	c.close()
	return true
}

// Register returns the console of a VM the bridge knows (by its BIOS
// UUID, say), creating an unconnected one if there is none yet, so that
// readers attached before the VM's host first connects see its output
// when it does: the host's connection then finds this console by the
// UUIDs they share. Accept does not apply, and the console limit gives
// way when every console is connected, since the bridge's VMs are bounded
// by its BMCs, not by what connects. An identity without a UUID, or a
// concentrator that has stopped, gets a closed console. A caller that
// only reads a console uses Find, which creates none.
func (cc *Concentrator) Register(id Identity) *Console {
	id.InstanceUUID, id.BIOSUUID = NormalizeUUID(id.InstanceUUID), NormalizeUUID(id.BIOSUUID)
	c, _ := cc.create(id, true)
	if c == nil {
		c = newConsole(cc, id)
		c.closed = true
	}
	return c
}

// consoleFor returns the console of the VM id names, creating it if the
// VM is new and Accept and the console limit let it in.
func (cc *Concentrator) consoleFor(id Identity) (*Console, error) {
	if c := cc.Find(id); c != nil {
		return c, nil
	}
	if cc.cfg.Accept != nil {
		if err := cc.cfg.Accept(id); err != nil {
			cc.rejected.Add(1)
			return nil, fmt.Errorf("%w: %w", errRejected, err)
		}
	}
	c, err := cc.create(id, false)
	if err != nil {
		return nil, err
	}
	cc.persist(c)
	return c, nil
}

// create returns the console id names, making it if there is none: past
// the console limit it replaces the one disconnected longest, and if all
// are connected it fails, unless overLimit. It returns nil, with an
// error, when id names no VM or the concentrator has stopped.
func (cc *Concentrator) create(id Identity, overLimit bool) (*Console, error) {
	if !id.identified() {
		return nil, errorf(errUnidentified, "no VM UUID")
	}
	cc.mu.Lock()
	if c := cc.findLocked(id); c != nil {
		cc.mu.Unlock()
		return c, nil
	}
	if cc.closed {
		cc.mu.Unlock()
		return nil, ErrClosed
	}
	evicted, ok := cc.makeRoomLocked()
	if !ok && !overLimit {
		cc.mu.Unlock()
		cc.rejected.Add(1)
		return nil, fmt.Errorf("%w: %d consoles, all connected", errRejected, len(cc.consoles))
	}
	c := newConsole(cc, id)
	cc.consoles[c] = struct{}{}
	cc.indexLocked(c, id)
	cc.mu.Unlock()
	if evicted != nil {
		cc.log.Info("console: forgot the console disconnected longest to make room", "vm", evicted.Identity().Name)
		evicted.close()
	}
	return c, nil
}

// findLocked matches by instance UUID, then by BIOS UUID unless both sides
// know instance UUIDs (which then differ: two clones).
func (cc *Concentrator) findLocked(id Identity) *Console {
	if c := cc.byInstance[id.InstanceUUID]; id.InstanceUUID != "" && c != nil {
		return c
	}
	c := cc.byBIOS[id.BIOSUUID]
	if id.BIOSUUID == "" || c == nil {
		return nil
	}
	if id.InstanceUUID != "" && c.Identity().InstanceUUID != "" {
		return nil
	}
	return c
}

// indexLocked makes c findable by the UUIDs in id. The newest console of
// a BIOS UUID wins its index entry: that is the clone that connected last.
func (cc *Concentrator) indexLocked(c *Console, id Identity) {
	if id.InstanceUUID != "" {
		cc.byInstance[id.InstanceUUID] = c
	}
	if id.BIOSUUID != "" {
		cc.byBIOS[id.BIOSUUID] = c
	}
}

// reindex records UUIDs a console learnt after it was created.
func (cc *Concentrator) reindex(c *Console) {
	id := c.Identity()
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if _, ok := cc.consoles[c]; ok {
		cc.indexLocked(c, id)
	}
}

// makeRoomLocked frees a place for a new console if the limit is reached,
// by forgetting the console disconnected for longest. It returns that
// console, for the caller to close outside cc.mu.
func (cc *Concentrator) makeRoomLocked() (*Console, bool) {
	if len(cc.consoles) < cc.cfg.MaxConsoles {
		return nil, true
	}
	var oldest *Console
	var oldestSeen time.Time
	for c := range cc.consoles {
		c.mu.Lock()
		idle, seen := c.cur == nil, c.lastSeen
		c.mu.Unlock()
		if idle && (oldest == nil || seen.Before(oldestSeen)) {
			oldest, oldestSeen = c, seen
		}
	}
	if oldest == nil {
		return nil, false
	}
	cc.forgetLocked(oldest)
	return oldest, true
}

func (cc *Concentrator) forgetLocked(c *Console) {
	delete(cc.consoles, c)
	for k, v := range cc.byInstance {
		if v == c {
			delete(cc.byInstance, k)
		}
	}
	for k, v := range cc.byBIOS {
		if v == c {
			delete(cc.byBIOS, k)
		}
	}
	for k, m := range cc.migrations {
		if m.console == c {
			delete(cc.migrations, k)
		}
	}
}

// persist starts feeding c's output to Config.Persist's writer, once per
// console: when a host connection creates it, or when the first one
// attaches to a console Register made, so that the writer is asked for
// with the UUIDs the host reports (a log named by instance UUID). It
// replays the ring, so output ingested before it started is not lost.
func (cc *Concentrator) persist(c *Console) {
	if cc.cfg.Persist == nil {
		return
	}
	c.mu.Lock()
	start := !c.persisting && !c.closed
	c.persisting = true
	id := c.id
	c.mu.Unlock()
	if !start {
		return
	}
	w, err := cc.cfg.Persist(id)
	if err != nil || w == nil {
		if err != nil {
			cc.log.Warn("console: no log file for the VM", "vm", id.Name, "err", err)
		}
		return
	}
	sub := c.Subscribe(true)
	cc.persisting.Go(func() {
		failed := false
		for chunk := range sub.C {
			if _, err := w.Write(chunk); err != nil && !failed {
				cc.log.Warn("console: writing the VM's log failed", "vm", id.Name, "err", err)
			}
			failed = err != nil
		}
		if cl, ok := w.(io.Closer); ok {
			cl.Close()
		}
	})
}

func (cc *Concentrator) addMigration(m *migration) {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	cc.migrations[m.key] = m
}

func (cc *Concentrator) dropMigration(m *migration) {
	if m == nil {
		return
	}
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.migrations[m.key] == m {
		delete(cc.migrations, m.key)
	}
}

func (cc *Concentrator) findMigration(key []byte) *migration {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	return cc.migrations[string(key)]
}

// closeAll closes every console when Serve ends.
func (cc *Concentrator) closeAll() {
	cc.mu.Lock()
	cc.closed = true
	all := slices.Collect(maps.Keys(cc.consoles))
	cc.mu.Unlock()
	for _, c := range all {
		c.close()
	}
}
