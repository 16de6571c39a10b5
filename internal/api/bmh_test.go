package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// bmhBackend records the BMH requests the server decodes; the rest of
// Backend is not called.
type bmhBackend struct {
	Backend
	got []BMH
}

func (b *bmhBackend) BMH(_ context.Context, req BMH) ([]byte, error) {
	b.got = append(b.got, req)
	if len(req.ControlPlane) > 0 && req.ControlPlane[0] == "[" {
		return nil, fmt.Errorf("%w: control plane: pattern %q: syntax error in pattern", ErrInvalid, "[")
	}
	return []byte("kind: BareMetalHost\n"), nil
}

// TestBMHControlPlane: the control plane's list crosses the API with its
// three meanings intact, nil (the daemon's default), empty (none) and
// globs, whether api.Client sends it or another client leaves it out; and
// the backend's ErrInvalid reaches the client as its message.
func TestBMHControlPlane(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "run", "api.sock")
	l, err := Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	b := &bmhBackend{}
	srv := &http.Server{Handler: Handler(b, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()
	c := NewClient(socket)
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		send []string // through api.Client
		body string   // or as it is, when set
		want []string
	}{
		{name: "nil", send: nil, want: nil},
		{name: "empty", send: []string{}, want: []string{}},
		{name: "globs", send: []string{"*-master-*", "a,b"}, want: []string{"*-master-*", "a,b"}},
		{name: "absent", body: `{"host": "192.168.86.168"}`, want: nil},
		{name: "null", body: `{"controlPlane": null}`, want: nil},
		{name: "empty, raw", body: `{"controlPlane": []}`, want: []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b.got = nil
			if tc.body == "" {
				var out strings.Builder
				if err := c.BMH(ctx, BMH{Host: "192.168.86.168", ControlPlane: tc.send}, &out); err != nil || out.String() != "kind: BareMetalHost\n" {
					t.Fatalf("BMH: %v, %q", err, out.String())
				}
			} else {
				resp, err := c.http.Post("http://daemon/v1/bmh", "application/json", strings.NewReader(tc.body))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status %s", resp.Status)
				}
			}
			if len(b.got) != 1 {
				t.Fatalf("%d requests reached the backend", len(b.got))
			}
			// DeepEqual tells nil from empty, which is the point.
			if got := b.got[0].ControlPlane; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("backend got controlPlane %#v, want %#v", got, tc.want)
			}
		})
	}

	err = c.BMH(ctx, BMH{ControlPlane: []string{"["}}, io.Discard)
	if err == nil || err.Error() != `invalid request: control plane: pattern "[": syntax error in pattern` {
		t.Errorf("error %v, want the backend's message as it is", err)
	}
}
