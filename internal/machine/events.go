package machine

import (
	"fmt"
	"sync"
	"time"
)

// EventKind is what happened to a system.
type EventKind int

// Event kinds, whether the bridge caused them or saw them in the backend.
const (
	EventPowerOn EventKind = iota + 1
	EventPowerOff
	// EventReset: the running system was reset (a new boot without power loss).
	EventReset
	// EventBootOverride: the boot override changed (set, or consumed by a boot).
	EventBootOverride
)

func (k EventKind) String() string {
	switch k {
	case EventPowerOn:
		return "power-on"
	case EventPowerOff:
		return "power-off"
	case EventReset:
		return "reset"
	case EventBootOverride:
		return "boot-override"
	}
	return fmt.Sprintf("event(%d)", int(k))
}

// Event is one entry of a system's event log.
type Event struct {
	// Seq numbers events from 1, without gaps, for the life of the log.
	Seq    uint64
	Time   time.Time
	Kind   EventKind
	Detail string
}

// EventLog keeps the most recent events of one system. It is safe for
// concurrent use. Like a BMC's SEL it has a fixed capacity; the oldest
// events are dropped first.
type EventLog struct {
	mu     sync.Mutex
	cap    int
	events []Event
	next   uint64
	now    func() time.Time
}

// NewEventLog returns a log keeping at most capacity events. now, when nil,
// is time.Now.
func NewEventLog(capacity int, now func() time.Time) *EventLog {
	if now == nil {
		now = time.Now
	}
	return &EventLog{cap: capacity, now: now, next: 1}
}

// Add records an event and returns it.
func (l *EventLog) Add(kind EventKind, detail string) Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := Event{Seq: l.next, Time: l.now(), Kind: kind, Detail: detail}
	l.next++
	l.events = append(l.events, e)
	if len(l.events) > l.cap {
		l.events = append(l.events[:0], l.events[len(l.events)-l.cap:]...)
	}
	return e
}

// Since returns the events with Seq > seq, oldest first.
func (l *EventLog) Since(seq uint64) []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, e := range l.events {
		if e.Seq > seq {
			return append([]Event(nil), l.events[i:]...)
		}
	}
	return nil
}
