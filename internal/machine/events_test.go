package machine

import (
	"testing"
	"time"
)

func TestEventLog(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	l := NewEventLog(3, func() time.Time { return now })
	for _, k := range []EventKind{EventPowerOn, EventBootOverride, EventReset, EventPowerOff} {
		l.Add(k, "")
	}
	tests := []struct {
		since uint64
		want  []uint64
	}{
		{0, []uint64{2, 3, 4}},
		{2, []uint64{3, 4}},
		{4, nil},
		{9, nil},
	}
	for _, tt := range tests {
		got := l.Since(tt.since)
		if len(got) != len(tt.want) {
			t.Fatalf("Since(%d) = %v, want seqs %v", tt.since, got, tt.want)
		}
		for i, e := range got {
			if e.Seq != tt.want[i] || !e.Time.Equal(now) {
				t.Fatalf("Since(%d)[%d] = %+v, want seq %d", tt.since, i, e, tt.want[i])
			}
		}
	}
	if got := l.Since(0)[2].Kind; got != EventPowerOff {
		t.Fatalf("newest kind %s", got)
	}
}
