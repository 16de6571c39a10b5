package console

import (
	"bytes"
	"testing"
	"time"
)

// BenchmarkThroughput measures VM output through a console: a host
// writes over loopback TCP, the concentrator decodes and fans it out, one
// reader drains it.
func BenchmarkThroughput(b *testing.B) {
	cases := []struct {
		name string
		fill func(i int) byte
	}{
		{"text", func(i int) byte { return 'a' + byte(i%26) }},
		{"binary with IAC every 16 bytes", func(i int) byte { return byte(i*7) | byte(i%16/15*255) }},
	}
	for _, cs := range cases {
		b.Run(cs.name, func(b *testing.B) {
			chunk := make([]byte, 32<<10)
			for i := range chunk {
				chunk[i] = cs.fill(i)
			}
			wire := appendEscaped(nil, chunk, true)
			tc := startConc(b, Config{SubscriberQueue: 1 << 14})
			h := dialHost(b, tc.addr, vmA)
			c := waitConsole(b, tc, vmAInstance)
			sub := c.Subscribe(false)
			total := uint64(b.N) * uint64(len(chunk))
			got := make(chan uint64)
			go func() {
				var n uint64
				for n+sub.Dropped() < total {
					select {
					case chunk := <-sub.C:
						n += uint64(len(chunk))
					case <-time.After(10 * time.Millisecond):
						// The last chunks may have been dropped.
					}
				}
				got <- n
			}()
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			for range b.N {
				h.raw(wire)
			}
			n := <-got
			b.StopTimer()
			if sub.Dropped() != 0 {
				b.ReportMetric(float64(sub.Dropped())/float64(total), "dropped/byte")
			}
			if n+sub.Dropped() != total {
				b.Fatalf("reader got %d bytes and dropped %d, want %d", n, sub.Dropped(), total)
			}
		})
	}
}

// BenchmarkKeystrokeRoundTrip measures a key typed at a console until the
// VM's echo of it reaches a reader: Write, the host connection, a host
// that echoes like a guest tty, decode, fan-out.
func BenchmarkKeystrokeRoundTrip(b *testing.B) {
	tc := startConc(b, Config{})
	h := dialHost(b, tc.addr, vmA)
	c := waitConsole(b, tc, vmAInstance)
	go func() {
		for {
			select {
			case k := <-h.keys:
				h.raw(appendEscaped(nil, k, true))
			case <-h.done:
				return
			}
		}
	}()
	sub := c.Subscribe(false)
	key := []byte{'k'}
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(key); err != nil {
			b.Fatal(err)
		}
		select {
		case echo := <-sub.C:
			if !bytes.Equal(echo, key) {
				b.Fatalf("echo %q", echo)
			}
		case <-time.After(5 * time.Second):
			b.Fatal("no echo")
		}
	}
}
