package console

import "sync/atomic"

// ring keeps the last max bytes written. It grows on demand up to max, so
// a concentrator with thousands of mostly silent VMs does not reserve the
// full buffer for each.
type ring struct {
	buf     []byte
	max     int
	pos     int // next write position once wrapped
	wrapped bool
}

func (r *ring) write(p []byte) {
	if len(p) >= r.max {
		r.grow(r.max)
		r.buf = r.buf[:r.max]
		copy(r.buf, p[len(p)-r.max:])
		r.pos, r.wrapped = 0, true
		return
	}
	if !r.wrapped {
		room := r.max - len(r.buf)
		if len(p) < room {
			r.grow(len(r.buf) + len(p))
			r.buf = append(r.buf, p...)
			return
		}
		r.grow(r.max)
		r.buf = append(r.buf, p[:room]...)
		p = p[room:]
		r.pos, r.wrapped = 0, true
	}
	n := copy(r.buf[r.pos:], p)
	copy(r.buf, p[n:])
	r.pos = (r.pos + len(p)) % r.max
}

// grow makes room for need bytes, doubling but never past max.
func (r *ring) grow(need int) {
	if need <= cap(r.buf) {
		return
	}
	size := min(r.max, max(need, 2*cap(r.buf), 4096))
	nb := make([]byte, len(r.buf), size)
	copy(nb, r.buf)
	r.buf = nb
}

// bytes returns a copy of the contents, oldest first.
func (r *ring) bytes() []byte {
	out := make([]byte, 0, len(r.buf))
	if r.wrapped {
		out = append(out, r.buf[r.pos:]...)
		return append(out, r.buf[:r.pos]...)
	}
	return append(out, r.buf...)
}

// Subscription is one reader of a console's output. Chunks arrive on C in
// order; a reader that falls SubscriberQueue chunks behind loses the
// chunks that do not fit, counted by Dropped, rather than slow the VM or
// the other readers. C is closed when the subscription or its console is
// closed. The chunks are shared with other readers: do not modify them.
type Subscription struct {
	C       <-chan []byte
	ch      chan []byte
	console *Console
	dropped atomic.Uint64
}

// Subscribe adds a reader. With replay, the buffered output comes first
// as one chunk, with nothing lost or repeated between it and the live
// output.
func (c *Console) Subscribe(replay bool) *Subscription {
	ch := make(chan []byte, c.queue+1)
	s := &Subscription{C: ch, ch: ch, console: c}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		close(ch)
		return s
	}
	if replay {
		if buffered := c.ring.bytes(); len(buffered) > 0 {
			ch <- buffered
		}
	}
	c.subs[s] = struct{}{}
	return s
}

// Output returns C (machine.ConsoleReader).
func (s *Subscription) Output() <-chan []byte { return s.C }

// Dropped returns how many bytes this reader lost by not keeping up.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Close ends the subscription and closes C. It is safe to call twice.
func (s *Subscription) Close() {
	c := s.console
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.subs[s]; ok {
		delete(c.subs, s)
		close(s.ch)
	}
}
