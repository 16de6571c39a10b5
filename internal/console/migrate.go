package console

import (
	"bytes"
	"errors"
	"slices"
)

var errIdentityConflict = errors.New("the host names another VM than the console's")

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
	// expires bounds a migration whose hosts never finish it (a host
	// crashed): keystrokes are held meanwhile.
	expires int64
}

// attach adds a host connection identified as this console's VM. Keystrokes
// go to the newest connection, since an older one of the same VM is a
// stale TCP connection its host gave up, except during a vMotion, where
// they wait for VMOTION-COMPLETE.
func (c *Console) attach(hc *hostConn, id Identity) error {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.id.conflicts(id) {
		c.mu.Unlock()
		return errIdentityConflict
	}
	c.id.merge(id)
	c.conns = append(c.conns, hc)
	first := c.cur == nil
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

// learn records what an attached connection's host told us later.
func (c *Console) learn(id Identity) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.id.conflicts(id) {
		return errIdentityConflict
	}
	c.id.merge(id)
	return nil
}

// detach removes a closed host connection.
func (c *Console) detach(hc *hostConn) {
	c.evMu.Lock()
	defer c.evMu.Unlock()
	c.mu.Lock()
	i := slices.Index(c.conns, hc)
	if i < 0 {
		c.mu.Unlock()
		return
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
	old := c.mig
	c.mig = m
	c.mu.Unlock()
	c.conc.dropMigration(old)
	c.conc.addMigration(m)
	return hc.send(appendSubneg(nil, optVMware, []byte{vmotionGoahead}, seq, secret))
}

// joinMigration records hc as the target host's connection of m, if m is
// still the console's migration.
func (c *Console) joinMigration(m *migration, hc *hostConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mig != m || c.conc.now().UnixNano() > m.expires {
		return false
	}
	m.peer = hc
	return true
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
	if m == nil || !bytes.Equal(m.seq, seq) || complete && m.peer != hc || !complete && m.source != hc {
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
