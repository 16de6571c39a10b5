package metrics

import (
	"testing"
	"time"
)

// BenchmarkRequest is what metrics add to every IPMI request.
func BenchmarkRequest(b *testing.B) {
	m := New(nil, nil)
	b.ReportAllocs()
	for b.Loop() {
		m.Request("Get Chassis Status", "00", time.Millisecond)
	}
}
