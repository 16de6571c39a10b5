package main

import (
	"bytes"
	"testing"
)

func TestReport(t *testing.T) {
	t.Parallel()
	const (
		ok   = `{"Action":"output","Package":"m/internal/a","Output":"ok  \tm/internal/a\t1.5s\n"}`
		pass = `{"Action":"pass","Package":"m/internal/a","Elapsed":1.5}`
	)
	tests := []struct {
		name    string
		in      []string
		slowest int
		want    string
	}{
		{"a passing package shows its result line and its timings", []string{
			`{"Action":"run","Package":"m/internal/a","Test":"TestQuick"}`,
			`{"Action":"output","Package":"m/internal/a","Test":"TestQuick","Output":"=== RUN   TestQuick\n"}`,
			`{"Action":"output","Package":"m/internal/a","Test":"TestQuick","Output":"    a_test.go:9: hidden\n"}`,
			`{"Action":"pass","Package":"m/internal/a","Test":"TestQuick","Elapsed":0.25}`,
			`{"Action":"pass","Package":"m/internal/a","Test":"TestSlow/sub","Elapsed":1.25}`,
			`{"Action":"pass","Package":"m/internal/a","Test":"TestSlow","Elapsed":1.25}`,
			`{"Action":"output","Package":"m/internal/a","Output":"PASS\n"}`,
			ok, pass,
		}, 10, "ok  \tm/internal/a\t1.5s\nslowest tests:\n" +
			"    1.25s  a TestSlow\n    0.25s  a TestQuick\n"},
		{"a failed test shows its output without go test -v's markers", []string{
			`{"Action":"output","Package":"m/internal/a","Test":"TestBad","Output":"=== PAUSE TestBad\n"}`,
			`{"Action":"output","Package":"m/internal/a","Test":"TestBad","Output":"    a_test.go:9: wrong\n"}`,
			`{"Action":"output","Package":"m/internal/a","Test":"TestBad","Output":"--- FAIL: TestBad (0.50s)\n"}`,
			`{"Action":"fail","Package":"m/internal/a","Test":"TestBad","Elapsed":0.5}`,
			`{"Action":"output","Package":"m/internal/a","Output":"FAIL\tm/internal/a\t0.6s\n"}`,
			`{"Action":"fail","Package":"m/internal/a","Elapsed":0.6}`,
		}, 0, "    a_test.go:9: wrong\n--- FAIL: TestBad (0.50s)\nFAIL\tm/internal/a\t0.6s\n"},
		{"a package that dies shows the output of the tests it was running", []string{
			`{"Action":"output","Package":"m/cmd/b","Test":"TestHangs","Output":"    b_test.go:3: waiting\n"}`,
			`{"Action":"output","Package":"m/internal/a","Test":"TestElsewhere","Output":"    a_test.go:1: not shown\n"}`,
			`{"Action":"output","Package":"m/cmd/b","Output":"panic: test timed out after 10m0s\n"}`,
			`{"Action":"fail","Package":"m/cmd/b","Elapsed":600}`,
		}, 10, "    b_test.go:3: waiting\npanic: test timed out after 10m0s\n"},
		{"build errors and lines that are not events pass through", []string{
			`{"ImportPath":"m/c [m/c.test]","Action":"build-output","Output":"c_test.go:5:32: undefined: x\n"}`,
			`go: downloading example.com/x v1.0.0`,
			`{"Action":"output","Package":"m/d","Output":"?   \tm/d\t[no test files]\n"}`,
			`{"Action":"skip","Package":"m/d"}`,
		}, 10, "c_test.go:5:32: undefined: x\ngo: downloading example.com/x v1.0.0\n?   \tm/d\t[no test files]\n"},
		{"packages in different trees are named from their shared root", []string{
			`{"Action":"pass","Package":"m/internal/a","Test":"TestA","Elapsed":2}`,
			`{"Action":"pass","Package":"m/cmd/b","Test":"TestB","Elapsed":3}`,
			`{"Action":"pass","Package":"m/cmd/b","Test":"TestC","Elapsed":1}`,
		}, 2, "slowest tests:\n    3.00s  cmd/b TestB\n    2.00s  internal/a TestA\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var out bytes.Buffer
			r := newReport(&out)
			for _, l := range tt.in {
				r.line([]byte(l + "\n"))
			}
			r.slowest(tt.slowest)
			if got := out.String(); got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}
