// Command ipmifuzz mutation-fuzzes a running bridge over UDP: it reads the
// FuzzDatagram corpus (real ipmitool and FreeIPMI datagrams, Go fuzz corpus
// format), mutates its entries (bit flips, boundary bytes, truncation,
// extension, splicing, insertion and deletion, header type bytes and, above
// all, the length fields of the RMCP, ASF, IPMI 1.5, RMCP+ and RAKP layers,
// often with the IPMI message checksums fixed so that a mutation gets past
// them) and sends them at a bounded rate, from many source addresses in
// 127.0.0.0/8, to the BMC ports, until -duration has passed.
//
// While it runs it watches the daemon: its process (-pid), an RMCP Presence
// Ping to each port every second from a source of its own, and the daemon's
// log (-daemon-log) for recovered panics. It keeps the last -ring datagrams
// it sent; the first time the daemon exits, stops answering pings for 10 s
// or logs a panic, it writes them to DIR/event-{exit,unresponsive,panic}.txt
// (-events DIR), and at exit to -dump. Each line there is one datagram as a
// Go fuzz corpus value, ready to paste into a testdata/fuzz file.
//
// Every second it rewrites -stats with one line of counters
// (sent=N replies=N ...). Standard library only; scripts/fuzz-ipmi.sh runs it:
//
//	go run ./scripts/ipmifuzz -duration 30s -pid $(pidof ipmi-vmware-bridge)
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	var (
		corpusDir = flag.String("corpus", "internal/ipmi/testdata/fuzz/FuzzDatagram", "Go fuzz corpus directory of the datagrams to mutate")
		host      = flag.String("host", "127.0.0.1", "the BMCs' address (must be in 127.0.0.0/8)")
		portsFlag = flag.String("ports", "6230-6234", "BMC UDP ports, FIRST-LAST")
		srcPrefix = flag.String("source-prefix", "127.0.2.", "source addresses are this prefix followed by 1..-sources")
		nSources  = flag.Int("sources", 64, "how many source addresses to send from (1-254)")
		rate      = flag.Int("rate", 3000, "datagrams per second, all sources together")
		duration  = flag.Duration("duration", 10*time.Minute, "how long to send")
		seed      = flag.Int64("seed", 0, "random seed (0: from the clock)")
		pid       = flag.Int("pid", 0, "the daemon's process ID; its exit stops the run (0: not watched)")
		daemonLog = flag.String("daemon-log", "", "the daemon's log file, watched for recovered panics")
		pingFrom  = flag.String("ping-from", "127.0.3.1", "source address of the liveness pings (not one of the fuzzing sources)")
		statsFile = flag.String("stats", "", "file rewritten every second with the counters")
		dumpFile  = flag.String("dump", "", "file the last -ring datagrams are written to at exit")
		eventsDir = flag.String("events", "", "directory for event-*.txt dumps (default: that of -dump)")
		ringSize  = flag.Int("ring", 20000, "how many of the last datagrams sent are kept")
	)
	flag.Parse()

	if *seed == 0 {
		*seed = time.Now().UnixNano()
	}
	if *eventsDir == "" && *dumpFile != "" {
		*eventsDir = filepath.Dir(*dumpFile)
	}
	dst := net.ParseIP(*host).To4()
	if dst == nil || dst[0] != 127 {
		fatalf("-host %q is not an address in 127.0.0.0/8", *host)
	}
	ports, err := parsePorts(*portsFlag)
	if err != nil {
		fatalf("-ports: %v", err)
	}
	if *nSources < 1 || *nSources > 254 || *rate < 1 || *ringSize < 1 {
		fatalf("-sources must be 1-254, -rate and -ring positive")
	}
	corpus, err := loadCorpus(*corpusDir)
	if err != nil {
		fatalf("%v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	ctx, stopSignals := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stopSignals()

	st := &stats{start: time.Now()}
	rec := &recorder{ring: make([]sent, *ringSize), dir: *eventsDir, written: map[string]bool{}}

	var conns []*net.UDPConn
	for i := 1; i <= *nSources; i++ {
		src := net.ParseIP(*srcPrefix + strconv.Itoa(i)).To4()
		if src == nil || src[0] != 127 || src.Equal(net.IPv4(127, 0, 0, 1)) {
			fatalf("source %s%d is not an address in 127.0.0.0/8 other than 127.0.0.1", *srcPrefix, i)
		}
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: src})
		if err != nil {
			fatalf("bind %s: %v", src, err)
		}
		defer c.Close()
		_ = c.SetReadBuffer(1 << 20)
		conns = append(conns, c)
		go st.readReplies(c)
	}

	var wg sync.WaitGroup
	died := make(chan struct{})
	if *pid > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); watchPID(ctx, *pid, rec, died) }()
	}
	if *daemonLog != "" {
		wg.Add(1)
		go func() { defer wg.Done(); watchLog(ctx, *daemonLog, rec, st) }()
	}
	wg.Add(1)
	go func() { defer wg.Done(); pinger(ctx, *pingFrom, dst, ports, rec, st) }()
	if *statsFile != "" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			writeStats(*statsFile, st)
			every(ctx, time.Second, func() bool { writeStats(*statsFile, st); return true })
		}()
	}

	fmt.Fprintf(os.Stderr, "ipmifuzz: %d corpus entries, %d sources %s1-%d, ports %s, %d datagrams/s for %s, seed %d\n",
		len(corpus), *nSources, *srcPrefix, *nSources, *portsFlag, *rate, *duration, *seed)
	m := &mutator{r: rand.New(rand.NewSource(*seed)), corpus: corpus}
	pick := rand.New(rand.NewSource(*seed + 1))
	start := st.start
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var n int64
	exit := 0
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-died:
			exit = 3
			break loop
		case now := <-tick.C:
			due := int64(now.Sub(start).Seconds()*float64(*rate)) - n
			if max := int64(*rate / 20); due > max { // no catching up in bursts after a stall
				n += due - max
				due = max
			}
			for ; due > 0; due-- {
				n++
				p, ops := m.next()
				c := conns[pick.Intn(len(conns))]
				port := ports[pick.Intn(len(ports))]
				rec.add(sent{t: time.Now(), src: c.LocalAddr().(*net.UDPAddr).IP.String(), port: port, ops: ops, data: p})
				if _, err := c.WriteToUDP(p, &net.UDPAddr{IP: dst, Port: port}); err != nil {
					st.sendErrors.Add(1)
					continue
				}
				st.sent.Add(1)
				st.sentBytes.Add(int64(len(p)))
			}
		}
	}
	st.stop.Store(time.Now().UnixNano())
	cancel()
	wg.Wait()
	time.Sleep(200 * time.Millisecond) // the last replies
	if *statsFile != "" {
		writeStats(*statsFile, st)
	}
	if *dumpFile != "" {
		if err := rec.dump(*dumpFile, "at exit"); err != nil {
			fmt.Fprintf(os.Stderr, "ipmifuzz: %v\n", err)
		}
	}
	fmt.Fprintf(os.Stderr, "ipmifuzz: done after %s: %s\n", time.Since(start).Round(time.Millisecond), st.line())
	os.Exit(exit)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "ipmifuzz: "+format+"\n", args...)
	os.Exit(1)
}

func parsePorts(s string) ([]int, error) {
	first, last, ok := strings.Cut(s, "-")
	if !ok {
		last = first
	}
	a, err1 := strconv.Atoi(first)
	b, err2 := strconv.Atoi(last)
	if err := errors.Join(err1, err2); err != nil || a < 1 || b > 65535 || a > b {
		return nil, fmt.Errorf("%q is not FIRST-LAST", s)
	}
	var ports []int
	for p := a; p <= b; p++ {
		ports = append(ports, p)
	}
	return ports, nil
}

// ---------------------------------------------------------------- corpus

type entry struct {
	name string
	data []byte
}

// loadCorpus reads every file of dir in Go's fuzz corpus format: a line
// "go test fuzz v1", then one line []byte("...") with a Go-quoted string.
func loadCorpus(dir string) ([]entry, error) {
	files, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var corpus []entry
	for _, f := range files {
		if f.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			return nil, err
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 2 || lines[0] != "go test fuzz v1" {
			return nil, fmt.Errorf("%s: not a one-value Go fuzz corpus file", f.Name())
		}
		v := strings.TrimSpace(lines[1])
		if !strings.HasPrefix(v, "[]byte(") || !strings.HasSuffix(v, ")") {
			return nil, fmt.Errorf("%s: not a []byte value: %.40s", f.Name(), v)
		}
		s, err := strconv.Unquote(v[len("[]byte(") : len(v)-1])
		if err != nil {
			return nil, fmt.Errorf("%s: %v", f.Name(), err)
		}
		corpus = append(corpus, entry{name: f.Name(), data: []byte(s)})
	}
	if len(corpus) == 0 {
		return nil, fmt.Errorf("no corpus entries in %s", dir)
	}
	sort.Slice(corpus, func(i, j int) bool { return corpus[i].name < corpus[j].name })
	return corpus, nil
}

// ---------------------------------------------------------------- mutations

// maxLen bounds a mutated datagram: well past the bridge's 512-byte limit,
// well under the loopback MTU.
const maxLen = 1400

type mutator struct {
	r      *rand.Rand
	corpus []entry
}

// next returns a mutated corpus entry and the mutations applied, in order.
func (m *mutator) next() ([]byte, string) {
	r := m.r
	base := m.corpus[r.Intn(len(m.corpus))]
	p := append([]byte(nil), base.data...)
	ops := []string{base.name}
	if r.Intn(25) == 0 { // now and then a real datagram as recorded: it opens sessions, keeps state moving
		return p, base.name + " replay"
	}
	n := 1
	for n < 6 && r.Intn(2) == 0 {
		n++
	}
	for i := 0; i < n; i++ {
		var op string
		p, op = pickMutation(r.Intn(100))(m, p)
		ops = append(ops, op)
	}
	if r.Intn(2) == 0 && fixChecksums(p) {
		ops = append(ops, "fixsum")
	}
	if len(p) > maxLen {
		p = p[:maxLen]
	}
	return p, strings.Join(ops, " ")
}

// mutations are the mutations with their shares in percent, which add up
// to 100: the length fields most, as the parsers' bounds are the target.
var mutations = []struct {
	percent int
	apply   func(*mutator, []byte) ([]byte, string)
}{
	{25, (*mutator).lengthField},
	{15, (*mutator).bitFlip},
	{15, (*mutator).boundaryByte},
	{8, (*mutator).headerType},
	{8, (*mutator).truncate},
	{8, (*mutator).extend},
	{8, (*mutator).splice},
	{6, (*mutator).insert},
	{7, (*mutator).remove},
}

// pickMutation returns the mutation that k, drawn from 0-99, falls to.
func pickMutation(k int) func(*mutator, []byte) ([]byte, string) {
	for _, mu := range mutations {
		if k < mu.percent {
			return mu.apply
		}
		k -= mu.percent
	}
	return mutations[len(mutations)-1].apply
}

func (m *mutator) bitFlip(p []byte) ([]byte, string) {
	if len(p) == 0 {
		return p, "flip(empty)"
	}
	k := 1 + m.r.Intn(4)
	var at []string
	for i := 0; i < k; i++ {
		bit := m.r.Intn(8 * len(p))
		p[bit/8] ^= 1 << (bit % 8)
		at = append(at, strconv.Itoa(bit))
	}
	return p, "flip@" + strings.Join(at, ",")
}

// interesting are the byte values set by boundaryByte, besides lengths.
var interesting = []int{0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff, 0x10, 0x20, 0x40}

func (m *mutator) boundaryByte(p []byte) ([]byte, string) {
	if len(p) == 0 {
		return p, "set(empty)"
	}
	i := m.r.Intn(len(p))
	var v int
	if m.r.Intn(3) == 0 { // a length: of the datagram, or of what follows i
		v = []int{len(p), len(p) - i, len(p) - i - 1, len(p) + 1, len(p) - 16}[m.r.Intn(5)]
	} else {
		v = interesting[m.r.Intn(len(interesting))]
	}
	p[i] = byte(v)
	return p, fmt.Sprintf("set@%d=%02x", i, byte(v))
}

// headerType rewrites one of the type bytes that choose a parser: the RMCP
// class, the session authentication type, the RMCP+ payload type.
func (m *mutator) headerType(p []byte) ([]byte, string) {
	if len(p) < 6 {
		return m.boundaryByte(p)
	}
	switch m.r.Intn(3) {
	case 0:
		v := []byte{0x06, 0x07, 0x08, 0x87, 0x00, 0xff}[m.r.Intn(6)]
		p[3] = v
		return p, fmt.Sprintf("class=%02x", v)
	case 1:
		v := []byte{0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x03, 0xff}[m.r.Intn(8)]
		p[4] = v
		return p, fmt.Sprintf("auth=%02x", v)
	default:
		v := []byte{0x00, 0x01, 0x02, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x3f}[m.r.Intn(10)]
		v |= []byte{0, 0x40, 0x80, 0xc0}[m.r.Intn(4)]
		p[5] = v
		return p, fmt.Sprintf("payload=%02x", v)
	}
}

func (m *mutator) truncate(p []byte) ([]byte, string) {
	if len(p) == 0 {
		return p, "trunc(empty)"
	}
	n := m.r.Intn(len(p))
	return p[:n], "trunc=" + strconv.Itoa(n)
}

func (m *mutator) randomBytes(n int) []byte {
	b := make([]byte, n)
	m.r.Read(b)
	return b
}

func (m *mutator) extend(p []byte) ([]byte, string) {
	n := 1 + m.r.Intn(16)
	if m.r.Intn(8) == 0 {
		n = 1 + m.r.Intn(700) // past the bridge's 512-byte limit, sometimes
	}
	return append(p, m.randomBytes(n)...), "ext+" + strconv.Itoa(n)
}

func (m *mutator) splice(p []byte) ([]byte, string) {
	o := m.corpus[m.r.Intn(len(m.corpus))]
	i, j := m.r.Intn(len(p)+1), m.r.Intn(len(o.data)+1)
	q := append(append([]byte(nil), p[:i]...), o.data[j:]...)
	return q, fmt.Sprintf("splice@%d+%s@%d", i, o.name, j)
}

func (m *mutator) insert(p []byte) ([]byte, string) {
	i, n := m.r.Intn(len(p)+1), 1+m.r.Intn(8)
	q := append(append(append([]byte(nil), p[:i]...), m.randomBytes(n)...), p[i:]...)
	return q, fmt.Sprintf("ins@%d+%d", i, n)
}

func (m *mutator) remove(p []byte) ([]byte, string) {
	if len(p) == 0 {
		return p, "del(empty)"
	}
	i := m.r.Intn(len(p))
	n := 1 + m.r.Intn(min(8, len(p)-i))
	return append(p[:i], p[i+n:]...), fmt.Sprintf("del@%d-%d", i, n)
}

// field is a length field of a datagram: its offset, size in bytes (little
// endian) and the value that would be right.
type field struct {
	name      string
	off, size int
	right     int
}

// lengthFields finds the length fields of p by the layout its headers claim.
func lengthFields(p []byte) []field {
	var fs []field
	add := func(name string, off, size, right int) {
		if off >= 0 && off+size <= len(p) {
			fs = append(fs, field{name, off, size, right})
		}
	}
	if len(p) < 6 {
		return nil
	}
	switch p[3] & 0x1f {
	case 0x06: // ASF: IANA(4) type tag reserved length
		add("asf.len", 11, 1, len(p)-12)
	case 0x07: // IPMI
		if p[4] == 0x06 { // RMCP+: auth payload [IANA(4) OEM payload(2)] session(4) seq(4) length(2)
			h := 16
			pt := p[5] & 0x3f
			if pt == 0x02 {
				h += 6
			}
			add("rmcpp.len", h-2, 2, len(p)-h)
			switch pt {
			case 0x10: // Open Session Request: three algorithm payloads, length byte at +3 each
				add("open.auth.len", h+11, 1, 8)
				add("open.integ.len", h+19, 1, 8)
				add("open.conf.len", h+27, 1, 8)
			case 0x11: // Open Session Response, the same from +12
				add("openr.auth.len", h+15, 1, 8)
				add("openr.integ.len", h+23, 1, 8)
				add("openr.conf.len", h+31, 1, 8)
			case 0x12: // RAKP 1: user name length
				add("rakp1.ulen", h+27, 1, len(p)-h-28)
			}
			// session trailer: pad length and next header before an auth code of 0, 12, 16 or 32 bytes
			for _, ac := range []int{0, 12, 16, 32} {
				add(fmt.Sprintf("trailer%d.padlen", ac), len(p)-ac-2, 1, 0)
			}
		} else { // IPMI 1.5: auth(1) seq(4) session(4) [code(16)] length(1)
			h := 13
			if p[4] != 0 {
				h += 16
			}
			add("v15.len", h, 1, len(p)-h-1)
		}
	}
	return fs
}

func (m *mutator) lengthField(p []byte) ([]byte, string) {
	fs := lengthFields(p)
	if len(fs) == 0 {
		return m.boundaryByte(p)
	}
	f := fs[m.r.Intn(len(fs))]
	vals := []int{0, 1, f.right - 1, f.right + 1, f.right + 16, f.right * 2, 0x7f, 0x80, 0xff, len(p), len(p) + 1}
	if f.size == 2 {
		vals = append(vals, 0xffff, 0x8000, 0x7fff, 0x100, 0x1ff, 512, 513, 1<<16-f.right)
	}
	v := vals[m.r.Intn(len(vals))]
	for i := 0; i < f.size; i++ {
		p[f.off+i] = byte(v >> (8 * i))
	}
	return p, fmt.Sprintf("%s=%d(right %d)", f.name, v&(1<<(8*f.size)-1), f.right)
}

// fixChecksums recomputes the two checksums of the IPMI message of an
// unencrypted datagram (RMCP+ payload type 0, or IPMI 1.5), so that a
// mutation behind them reaches the handlers. It reports whether it found a
// message.
func fixChecksums(p []byte) bool {
	if len(p) < 6 || p[3]&0x1f != 0x07 {
		return false
	}
	var msg []byte
	if p[4] == 0x06 {
		if p[5] != 0x00 && p[5] != 0x40 || len(p) < 16 {
			return false
		}
		n := int(p[14]) | int(p[15])<<8
		if 16+n > len(p) {
			return false
		}
		msg = p[16 : 16+n]
	} else {
		h := 13
		if p[4] != 0 {
			h += 16
		}
		if len(p) <= h {
			return false
		}
		n := int(p[h])
		if h+1+n > len(p) {
			return false
		}
		msg = p[h+1 : h+1+n]
	}
	if len(msg) < 7 {
		return false
	}
	msg[2] = checksum(msg[:2])
	msg[len(msg)-1] = checksum(msg[3 : len(msg)-1])
	return true
}

func checksum(b []byte) byte {
	var s byte
	for _, c := range b {
		s += c
	}
	return -s
}

// ---------------------------------------------------------------- counters

type stats struct {
	sent, sentBytes, sendErrors atomic.Int64
	replies, replyBytes         atomic.Int64
	maxReply                    atomic.Int64
	pings, pongs                atomic.Int64
	panics                      atomic.Int64
	start                       time.Time
	stop                        atomic.Int64 // UnixNano when sending stopped, 0 while it goes on
}

func (s *stats) readReplies(c *net.UDPConn) {
	buf := make([]byte, 65536)
	for {
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.replies.Add(1)
		s.replyBytes.Add(int64(n))
		for {
			old := s.maxReply.Load()
			if int64(n) <= old || s.maxReply.CompareAndSwap(old, int64(n)) {
				break
			}
		}
	}
}

func (s *stats) line() string {
	end := time.Now()
	if t := s.stop.Load(); t != 0 {
		end = time.Unix(0, t)
	}
	return fmt.Sprintf("elapsed_ms=%d sent=%d replies=%d send_errors=%d sent_bytes=%d reply_bytes=%d max_reply=%d pings=%d pongs=%d panics_logged=%d",
		end.Sub(s.start).Milliseconds(), s.sent.Load(), s.replies.Load(), s.sendErrors.Load(), s.sentBytes.Load(), s.replyBytes.Load(), s.maxReply.Load(),
		s.pings.Load(), s.pongs.Load(), s.panics.Load())
}

func writeStats(path string, s *stats) {
	tmp := path + ".tmp"
	if os.WriteFile(tmp, []byte(s.line()+"\n"), 0o644) == nil {
		_ = os.Rename(tmp, path)
	}
}

// ---------------------------------------------------------------- last datagrams

type sent struct {
	t    time.Time
	src  string
	port int
	ops  string
	data []byte
}

// recorder keeps the last datagrams sent, in a ring, and dumps them.
type recorder struct {
	mu      sync.Mutex
	ring    []sent
	next    int
	full    bool
	dir     string
	written map[string]bool
}

func (r *recorder) add(s sent) {
	r.mu.Lock()
	r.ring[r.next] = s
	r.next = (r.next + 1) % len(r.ring)
	if r.next == 0 {
		r.full = true
	}
	r.mu.Unlock()
}

// dump writes the ring, oldest first, under a header saying why.
func (r *recorder) dump(path, why string) error {
	r.mu.Lock()
	var all []sent
	if r.full {
		all = append(all, r.ring[r.next:]...)
	}
	all = append(all, r.ring[:r.next]...)
	r.mu.Unlock()
	var b bytes.Buffer
	fmt.Fprintf(&b, "# ipmifuzz: the last %d datagrams sent, oldest first, written %s %s\n", len(all), time.Now().Format("15:04:05.000000"), why)
	fmt.Fprintf(&b, "# time source->port mutations (corpus entry first) then the datagram as a Go fuzz corpus value\n")
	for _, s := range all {
		fmt.Fprintf(&b, "%s %s->%d len=%d [%s] []byte(%s)\n", s.t.Format("15:04:05.000000"), s.src, s.port, len(s.data), s.ops, strconv.Quote(string(s.data)))
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// event dumps the ring to DIR/event-KIND.txt the first time KIND happens.
func (r *recorder) event(kind, why string) {
	fmt.Fprintf(os.Stderr, "ipmifuzz: %s %s\n", time.Now().Format("15:04:05.000000"), why)
	r.mu.Lock()
	done := r.written[kind]
	r.written[kind] = true
	r.mu.Unlock()
	if done || r.dir == "" {
		return
	}
	path := filepath.Join(r.dir, "event-"+kind+".txt")
	if err := r.dump(path, "because: "+why); err != nil {
		fmt.Fprintf(os.Stderr, "ipmifuzz: %v\n", err)
	} else {
		fmt.Fprintf(os.Stderr, "ipmifuzz: the last datagrams sent are in %s\n", path)
	}
}

// ---------------------------------------------------------------- watching the daemon

// watchPID closes died when the process exits (or is a zombie: the daemon
// is the script's child, reaped only when the script waits for it).
func watchPID(ctx context.Context, pid int, rec *recorder, died chan<- struct{}) {
	every(ctx, 50*time.Millisecond, func() bool {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		state := ""
		if i := bytes.LastIndexByte(b, ')'); err == nil && i >= 0 && i+2 < len(b) {
			state = string(b[i+2])
		}
		if err != nil || state == "Z" || state == "X" {
			rec.event("exit", fmt.Sprintf("the daemon (pid %d) exited", pid))
			close(died)
			return false
		}
		return true
	})
}

// watchLog counts "panicked" lines the daemon logs from now on.
func watchLog(ctx context.Context, path string, rec *recorder, st *stats) {
	var off int64
	if fi, err := os.Stat(path); err == nil {
		off = fi.Size()
	}
	var partial []byte
	buf := make([]byte, 1<<20)
	every(ctx, 250*time.Millisecond, func() bool {
		f, err := os.Open(path)
		if err != nil {
			return true
		}
		n, _ := f.ReadAt(buf, off)
		f.Close()
		off += int64(n)
		data := append(partial, buf[:n]...)
		last := bytes.LastIndexByte(data, '\n')
		partial = append([]byte(nil), data[last+1:]...)
		for _, line := range bytes.Split(data[:last+1], []byte("\n")) {
			if bytes.Contains(line, []byte("panicked")) {
				st.panics.Add(1)
				rec.event("panic", "the daemon logged a panic: "+string(line[:min(len(line), 300)]))
			}
		}
		return true
	})
}

// every calls fn each period, the first time one period from now, until
// ctx ends or fn returns false.
func every(ctx context.Context, period time.Duration, fn func() bool) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !fn() {
			return
		}
	}
}

// pinger sends an RMCP/ASF Presence Ping to each port every second from an
// address of its own, and reports a port that has not answered for 10 s.
func pinger(ctx context.Context, from string, dst net.IP, ports []int, rec *recorder, st *stats) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(from)})
	if err != nil {
		fmt.Fprintf(os.Stderr, "ipmifuzz: no liveness pings: %v\n", err)
		return
	}
	defer c.Close()
	var mu sync.Mutex
	start := time.Now()
	last := map[int]time.Time{}
	for _, p := range ports {
		last[p] = start
	}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, a, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if n >= 12 && buf[3] == 0x06 && buf[8] == 0x40 { // Presence Pong
				st.pongs.Add(1)
				mu.Lock()
				last[a.Port] = time.Now()
				mu.Unlock()
			}
		}
	}()
	silent := map[int]bool{}
	tag := byte(0)
	round := func() bool { // a ping to each port
		for _, p := range ports {
			ping := []byte{0x06, 0x00, 0xff, 0x06, 0x00, 0x00, 0x11, 0xbe, 0x80, tag, 0x00, 0x00}
			if _, err := c.WriteToUDP(ping, &net.UDPAddr{IP: dst, Port: p}); err == nil {
				st.pings.Add(1)
			}
			mu.Lock()
			quiet := time.Since(last[p])
			mu.Unlock()
			if quiet > 10*time.Second && !silent[p] {
				silent[p] = true
				rec.event("unresponsive", fmt.Sprintf("port %d has not answered an RMCP ping for %s", p, quiet.Round(time.Second)))
			} else if quiet < 2*time.Second && silent[p] {
				silent[p] = false
				fmt.Fprintf(os.Stderr, "ipmifuzz: %s port %d answers pings again\n", time.Now().Format("15:04:05.000000"), p)
			}
		}
		tag++
		return true
	}
	round()
	every(ctx, time.Second, round)
}
