package ipmi

import (
	"container/list"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/bougou/go-ipmi/pkg/bmc"
)

// Handshake limits, per endpoint. A source gets at most perSourcePending
// sessions in setup at once (a console needs one, but one host may start
// several at the same instant: Ironic's conductor, a fencing agent, a
// script; with 4, eight ipmitool processes started together lost a login
// or two in a hundred); the endpoint at most maxPending, enough that 249
// sources at their limit never fill it, so that a flood
// from many addresses evicts only the flooders' own handshakes. Forged
// sources can fill it (they need not wait for answers); then the oldest
// handshake that has not yet proved a round trip, of a source with the
// most, goes first. A handshake that got RAKP 2 is never evicted: it ends
// by RAKP 3 or by timing out, and then counts as a failure if it failed,
// so that a guesser cannot push its own failures out of the table.
const (
	perSourcePending = 8
	maxPending       = 2048
	// handshakeTimeout is how long a setup may take from Open Session (or
	// Get Session Challenge) to RAKP 3 (or Activate Session). Consoles
	// answer within milliseconds; Ironic's ipmitool waits 5 s before it
	// retries a step.
	handshakeTimeout = 5 * time.Second
)

// hsKey names a handshake: the managed system session ID of RMCP+ (given
// in the Open Session Response), or the temporary session ID of IPMI 1.5
// (given in the Get Session Challenge response). Both went only to the
// source that asked, so a later step that names it from that source proves
// a round trip: it can be counted against that source.
type hsKey struct {
	id  uint32
	v15 bool
}

// handshake is one session setup in progress.
type handshake struct {
	key hsKey
	ip  netip.Addr
	at  time.Time
	// rakp2 is set once RAKP 2 went out with status 0: the console then has
	// what it needs to prove the password, and a handshake abandoned from
	// here is how ipmitool, FreeIPMI and pyghmi show a wrong password (they
	// check RAKP 2 and stop without a word).
	rakp2 bool
	// v15 is the IPMI 1.5 session waiting for Activate Session.
	v15 *bmc.V15Session
	// rmcp is the RMCP+ handshake's state.
	rmcp *rakp
}

// handshakes is one endpoint's table of session setups in progress, in
// the order they began.
type handshakes struct {
	mu    sync.Mutex
	byKey map[hsKey]*list.Element
	order list.List // of *handshake, oldest first
	// bySource holds each source's handshakes, oldest first, so that
	// making room for a source at its limit looks at its own few rather
	// than scanning the table: under a flood from many sources that scan
	// ran for every datagram and the loop fell behind.
	bySource map[netip.Addr][]*list.Element
	// sources[n] counts the sources with n handshakes, so that the
	// busiest is found without a scan.
	sources [perSourcePending + 1]int
	// begun is signalled when a handshake is added: every session begins
	// with one, so it is what wakes the endpoint's housekeeping.
	begun chan struct{}
}

func newHandshakes() *handshakes {
	return &handshakes{byKey: map[hsKey]*list.Element{}, bySource: map[netip.Addr][]*list.Element{}, begun: make(chan struct{}, 1)}
}

// admit makes room for one more handshake from ip, and reports whether
// there is room: ip's oldest handshake still without RAKP 2 goes when ip
// is at its limit, and when the table is full the oldest such handshake of
// a source with the most.
func (t *handshakes) admit(ip netip.Addr) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.bySource[ip]) >= perSourcePending && !t.evictLocked(t.bySource[ip], nil) {
		return false
	}
	if t.order.Len() < maxPending {
		return true
	}
	// The table is full, which only forged sources do: they cannot reach
	// RAKP 2, so the scan stops at the first handshakes it looks at.
	for most := perSourcePending; most > 0; most-- {
		if t.sources[most] > 0 && t.evictLocked(nil, func(h *handshake) bool { return len(t.bySource[h.ip]) == most }) {
			return true
		}
	}
	return false
}

// evictLocked removes the oldest handshake without RAKP 2, among elems
// when given, else in the whole table among those match accepts, and
// reports whether there was one.
func (t *handshakes) evictLocked(elems []*list.Element, match func(*handshake) bool) bool {
	if elems != nil {
		for _, e := range elems {
			if !e.Value.(*handshake).rakp2 {
				t.removeLocked(e)
				return true
			}
		}
		return false
	}
	for e := t.order.Front(); e != nil; e = e.Next() {
		if h := e.Value.(*handshake); !h.rakp2 && match(h) {
			t.removeLocked(e)
			return true
		}
	}
	return false
}

// add records a handshake that has begun.
func (t *handshakes) add(h *handshake) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.order.PushBack(h)
	t.byKey[h.key] = e
	n := len(t.bySource[h.ip])
	if n > 0 {
		t.sources[n]--
	}
	t.sources[n+1]++
	t.bySource[h.ip] = append(t.bySource[h.ip], e)
	select {
	case t.begun <- struct{}{}:
	default:
	}
}

// from returns the handshake k if ip began it.
func (t *handshakes) from(k hsKey, ip netip.Addr) (*handshake, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byKey[k]
	if !ok || e.Value.(*handshake).ip != ip {
		return nil, false
	}
	return e.Value.(*handshake), true
}

// get returns handshake k, whoever began it.
func (t *handshakes) get(k hsKey) (*handshake, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byKey[k]
	if !ok {
		return nil, false
	}
	return e.Value.(*handshake), true
}

// sentRAKP2 marks k as waiting for RAKP 3.
func (t *handshakes) sentRAKP2(k hsKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.byKey[k]; ok {
		e.Value.(*handshake).rakp2 = true
	}
}

// done ends handshake k, whatever its outcome; it reports whether k was
// still there.
func (t *handshakes) done(k hsKey) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.byKey[k]
	if ok {
		t.removeLocked(e)
	}
	return ok
}

// expired removes and returns the handshakes older than handshakeTimeout.
func (t *handshakes) expired(now time.Time) []*handshake {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*handshake
	for e := t.order.Front(); e != nil; e = t.order.Front() {
		h := e.Value.(*handshake)
		if now.Sub(h.at) < handshakeTimeout {
			break
		}
		t.removeLocked(e)
		out = append(out, h)
	}
	return out
}

func (t *handshakes) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.order.Len()
}

func (t *handshakes) removeLocked(e *list.Element) {
	h := t.order.Remove(e).(*handshake)
	delete(t.byKey, h.key)
	elems := t.bySource[h.ip]
	n := len(elems)
	t.sources[n]--
	if n > 1 {
		t.sources[n-1]++
		t.bySource[h.ip] = slices.DeleteFunc(elems, func(x *list.Element) bool { return x == e })
	} else {
		delete(t.bySource, h.ip)
	}
}
