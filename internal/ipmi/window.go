package ipmi

// window is the inbound session sequence check of IPMI v2.0 §6.12.13: a
// packet is accepted when its sequence number is up to 15 ahead of the
// highest accepted, or up to 16 behind it and not yet received; duplicates
// and 0 are rejected. go-ipmi's RMCP+ check accepts duplicates inside the
// window, so a captured packet could be replayed; this one remembers what
// it saw. The first packet of a session sets the window wherever it is:
// ipmitool counts its pre-session packets too, so its first in-session
// number is 3 or more, and the keys that authenticate it are new.
type window struct {
	high uint32
	seen uint32 // bit i: high-1-i was received
	used bool
}

// accept reports whether seq is new and in the window, and records it.
// Callers check authentication first: only a genuine packet may move the
// window.
func (w *window) accept(seq uint32) bool {
	if seq == 0 {
		return false
	}
	if !w.used {
		w.high, w.seen, w.used = seq, 0, true
		return true
	}
	d := int32(seq - w.high) // wraps as the spec's sequence numbers do
	switch {
	case d > 0 && d <= 15:
		w.seen = w.seen<<uint(d) | 1<<uint(d-1)
		w.high = seq
		return true
	case d < 0 && d >= -16:
		bit := uint32(1) << uint(-d-1)
		if w.seen&bit != 0 {
			return false
		}
		w.seen |= bit
		return true
	}
	return false
}
