package console

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

var (
	errIdentityConflict = errors.New("the host names another VM than the console's")
	errWeakIdentity     = fmt.Errorf("%w: the connection names the VM by a weaker UUID than its console knows (no instance UUID, or another)", errProtocol)
	errMigrationEnded   = fmt.Errorf("%w: VMOTION-PEER for a vMotion that has ended", errProtocol)
	errPeerTaken        = fmt.Errorf("%w: VMOTION-PEER for a vMotion that already has its target", errProtocol)
	// errDropped: the console dropped the connection (mergeLocked) while
	// its session still had bytes to process.
	errDropped = errors.New("the console dropped the connection")
)

// migration is a vMotion in progress for one console, from the
// VMOTION-GOAHEAD we sent the source host to the VMOTION-COMPLETE of the
// target or the VMOTION-ABORT of the source.
type migration struct {
	console *Console
	seq     []byte
	// key is the sequence and the secret, as VMOTION-PEER carries them.
	key    string
	source *hostConn
	peer   *hostConn
	// peered stays set once a target presented the secret, even after
	// its connection closes (peer is then nil): a migration accepts one
	// VMOTION-PEER, so a replayed or second one, from whoever saw the
	// secret, cannot take the VM's keystrokes.
	peered bool
	// expires bounds a migration whose hosts never finish it (a host
	// crashed): keystrokes are held meanwhile.
	expires int64
}

// attach adds a host connection: one identified as this console's VM (m
// nil), which Identity.mayJoin must let in, or the target host's of the
// console's vMotion m, which proved itself with VMOTION-PEER's secret
// instead. Keystrokes go to the newest connection, since an older one of
// the same VM is a stale TCP connection its host gave up, except during a
// vMotion, where they wait for VMOTION-COMPLETE.
func (c *Console) attach(hc *hostConn, id Identity, m *migration) error {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	c.mu.Lock()
	if err := c.admitLocked(hc, id, m); err != nil {
		c.mu.Unlock()
		return err
	}
	first := c.cur == nil
	c.conns = append(c.conns, hc)
	c.mergeLocked(hc, id)
	if first || c.mig == nil {
		c.cur = hc
	}
	c.mu.Unlock()
	c.connections.Add(1)
	if first {
		c.emit(EventConnected, hc)
	}
	return nil
}

// admitLocked decides whether hc may attach; for a vMotion target it
// also makes hc the target of m.
func (c *Console) admitLocked(hc *hostConn, id Identity, m *migration) error {
	switch {
	case c.closed:
		return ErrClosed
	case c.id.conflicts(id):
		return errIdentityConflict
	case m != nil:
		return c.claimLocked(m, hc)
	case !c.id.mayJoin(id):
		return errWeakIdentity
	}
	return nil
}

// learn records what an attached connection's host told us later.
func (c *Console) learn(hc *hostConn, id Identity) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.id.conflicts(id) {
		return errIdentityConflict
	}
	if hc.dropped.Load() {
		return errDropped
	}
	c.mergeLocked(hc, id)
	return nil
}

// mergeLocked records what hc's host said of the VM. When that gives the
// console its first instance UUID, every other connection joined without
// one (or the console would know it), so none names the VM as strongly as
// the console now does (Identity.mayJoin): they are closed, since one may
// be an impostor that joined by BIOS UUID before the VM's host connected.
func (c *Console) mergeLocked(hc *hostConn, id Identity) {
	had := c.id.InstanceUUID != ""
	c.id.merge(id)
	if had || c.id.InstanceUUID == "" {
		return
	}
	for _, o := range slices.Clone(c.conns) {
		if o != hc {
			c.removeLocked(o)
			o.dropped.Store(true)
			o.close()
		}
	}
}

// removeLocked takes hc off the console's connections, reporting whether
// it was on them; keystrokes go to the newest one left.
func (c *Console) removeLocked(hc *hostConn) bool {
	i := slices.Index(c.conns, hc)
	if i < 0 {
		return false
	}
	c.conns = slices.Delete(c.conns, i, i+1)
	if c.mig != nil && c.mig.peer == hc {
		c.mig.peer = nil
	}
	if c.cur == hc {
		c.cur = nil
		if n := len(c.conns); n > 0 {
			c.cur = c.conns[n-1]
		}
	}
	return true
}

// detach removes a closed host connection.
func (c *Console) detach(hc *hostConn) {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	c.mu.Lock()
	if !c.removeLocked(hc) {
		c.mu.Unlock()
		return
	}
	last := c.cur == nil
	if last {
		c.lastSeen = c.conc.now()
	}
	c.mu.Unlock()
	if last {
		c.emit(EventDisconnected, hc)
	}
}

// beginMigration answers VMOTION-BEGIN with VMOTION-GOAHEAD and a fresh
// secret. Holding wmu, no keystroke is on its way to the source host once
// GOAHEAD is sent: GOAHEAD tells the host that all queued data has been
// transmitted.
func (c *Console) beginMigration(hc *hostConn, seq []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	secret := newSecret()
	m := &migration{
		console: c,
		seq:     bytes.Clone(seq),
		key:     string(seq) + string(secret),
		source:  hc,
		expires: c.conc.now().Add(c.conc.cfg.MigrationTimeout).UnixNano(),
	}
	c.mu.Lock()
	if hc.dropped.Load() {
		c.mu.Unlock()
		return errDropped
	}
	old := c.mig
	c.mig = m
	c.mu.Unlock()
	c.conc.dropMigration(old)
	c.conc.addMigration(m)
	return hc.send(appendSubneg(nil, optVMware, []byte{vmotionGoahead}, seq, secret))
}

// joinMigration makes hc, a connection already attached to the console,
// the target host's connection of m.
func (c *Console) joinMigration(m *migration, hc *hostConn) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if hc.dropped.Load() {
		return errDropped
	}
	return c.claimLocked(m, hc)
}

// claimLocked makes hc the target of m if m is still the console's
// migration and no connection presented its secret before: the first
// VMOTION-PEER wins, and the target it names keeps the migration.
func (c *Console) claimLocked(m *migration, hc *hostConn) error {
	switch {
	case c.mig != m || c.conc.now().UnixNano() > m.expires:
		return errMigrationEnded
	case m.peered:
		return errPeerTaken
	}
	m.peer, m.peered = hc, true
	return nil
}

// finishMigration ends the console's migration named by seq: complete
// when the target host sent VMOTION-COMPLETE on hc (the connection that
// presented the secret), aborted when the source host sent VMOTION-ABORT
// on hc. Either way hc carries the keystrokes from now on, starting with
// the held ones, as VMware's description requires of both messages.
func (c *Console) finishMigration(hc *hostConn, seq []byte, complete bool) error {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	done, err := c.switchTo(hc, seq, complete)
	switch {
	case done && complete:
		c.migrations.Add(1)
		c.emit(EventMigrated, hc)
	case done:
		c.emit(EventMigrationAborted, hc)
	}
	return err
}

func (c *Console) switchTo(hc *hostConn, seq []byte, complete bool) (bool, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	m := c.mig
	ours := m != nil && bytes.Equal(m.seq, seq) && (complete && m.peer == hc || !complete && m.source == hc)
	if !ours || hc.dropped.Load() {
		c.mu.Unlock()
		return false, nil
	}
	c.mig, c.cur = nil, hc
	held := c.pending
	c.pending = nil
	c.mu.Unlock()
	c.conc.dropMigration(m)
	return true, c.sendKeys(hc, held)
}

// expireMigrationLocked ends a migration past its deadline and returns
// it, for the caller to drop from the concentrator outside c.mu.
func (c *Console) expireMigrationLocked() *migration {
	m := c.mig
	if m == nil || c.conc.now().UnixNano() <= m.expires {
		return nil
	}
	c.mig = nil
	return m
}
