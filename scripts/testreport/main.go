// Command testreport reads `go test -json` on standard input and prints
// what a plain `go test` run shows, one line a package and the whole
// output of every failed test and build, followed by the slowest tests,
// so that the suite's time has names on it. scripts/test.sh runs the
// suite through it:
//
//	go test -race -count=1 -json ./... | go run ./scripts/testreport
//
// It exits 0 whatever the tests did: under pipefail the pipeline's status
// is go test's own.
package main

import (
	"bufio"
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
)

// event is one line of go test -json (see go doc test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // of build-output events
	Elapsed    float64
}

type key struct{ pkg, test string }

// timing is how long a finished top-level test took.
type timing struct {
	key
	seconds float64
}

// report holds the output of what is still running until its outcome
// says whether to show it.
type report struct {
	out     io.Writer
	tests   map[key][]string
	pkgs    map[string][]string
	timings []timing
}

func newReport(out io.Writer) *report {
	return &report{out: out, tests: map[key][]string{}, pkgs: map[string][]string{}}
}

// line takes one line of input; one that is not an event (go test's own
// complaints, say) is shown as it is.
func (r *report) line(b []byte) {
	var e event
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &e) != nil {
		fmt.Fprintln(r.out, strings.TrimRight(string(b), "\n"))
		return
	}
	r.event(e)
}

func (r *report) event(e event) {
	k := key{e.Package, e.Test}
	switch {
	case e.Action == "build-output":
		fmt.Fprint(r.out, e.Output)
	case e.Action == "output" && e.Test != "":
		// go test -v's markers: the output is grouped by test here.
		if !strings.HasPrefix(e.Output, "=== ") {
			r.tests[k] = append(r.tests[k], e.Output)
		}
	case e.Action == "output":
		r.pkgs[e.Package] = append(r.pkgs[e.Package], e.Output)
	case e.Test != "" && (e.Action == "pass" || e.Action == "fail" || e.Action == "skip"):
		if e.Action == "fail" {
			r.print(r.tests[k])
		}
		delete(r.tests, k)
		if !strings.Contains(e.Test, "/") && e.Action != "skip" {
			r.timings = append(r.timings, timing{k, e.Elapsed})
		}
	case e.Action == "pass" || e.Action == "skip":
		r.print(slices.DeleteFunc(r.pkgs[e.Package], func(s string) bool { return s == "PASS\n" }))
		r.forget(e.Package)
	case e.Action == "fail":
		r.failed(e.Package)
	}
}

// failed shows a failed package's own output and that of its tests that
// never finished: a panic or a timeout ends the binary in the middle of
// them, and their output is where it says why.
func (r *report) failed(pkg string) {
	var running []key
	for k := range r.tests {
		if k.pkg == pkg {
			running = append(running, k)
		}
	}
	slices.SortFunc(running, func(a, b key) int { return strings.Compare(a.test, b.test) })
	for _, k := range running {
		r.print(r.tests[k])
	}
	r.print(r.pkgs[pkg])
	r.forget(pkg)
}

func (r *report) forget(pkg string) {
	delete(r.pkgs, pkg)
	for k := range r.tests {
		if k.pkg == pkg {
			delete(r.tests, k)
		}
	}
}

func (r *report) print(lines []string) {
	for _, l := range lines {
		fmt.Fprint(r.out, l)
	}
}

// slowest lists the n longest top-level tests, their packages named
// below the directory all of them share.
func (r *report) slowest(n int) {
	if len(r.timings) == 0 || n <= 0 {
		return
	}
	slices.SortStableFunc(r.timings, func(a, b timing) int { return cmp.Compare(b.seconds, a.seconds) })
	shared := path.Dir(r.timings[0].pkg)
	for _, t := range r.timings {
		for shared != "." && !strings.HasPrefix(t.pkg, shared+"/") {
			shared = path.Dir(shared)
		}
	}
	fmt.Fprintln(r.out, "slowest tests:")
	for _, t := range r.timings[:min(n, len(r.timings))] {
		fmt.Fprintf(r.out, "%8.2fs  %s %s\n", t.seconds, strings.TrimPrefix(t.pkg, shared+"/"), t.test)
	}
}

func main() {
	n := flag.Int("slowest", 10, "how many of the slowest tests to list")
	flag.Parse()
	r := newReport(os.Stdout)
	in := bufio.NewReader(os.Stdin)
	for {
		b, err := in.ReadBytes('\n')
		if len(b) > 0 {
			r.line(b)
		}
		if err != nil {
			break
		}
	}
	r.slowest(*n)
}
