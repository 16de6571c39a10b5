package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/machine"
	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/safedir"
)

// Backend is what the API manages: the daemon implements it over the
// bridge, the inventory and the manifest renderer.
type Backend interface {
	BMCs() []BMC
	BMC(id string) (BMC, error)
	Add(context.Context, Add) (BMC, error)
	AddAll(context.Context, AddAll) ([]BMC, error)
	Remove(id string) error
	Stop(id string) error
	Start(id string) error
	VMs(ctx context.Context, q VMQuery) ([]VM, error)
	Check(context.Context) []Check
	BMH(context.Context, BMH) ([]byte, error)
	Reload() error
	// ConsoleLog is the output kept of the serial console of the BMC id
	// names, and Console that console to attach to: ErrNotFound for an
	// unknown BMC, ErrConflict for one that offers no console.
	ConsoleLog(ctx context.Context, id string) ([]byte, error)
	Console(ctx context.Context, id string) (machine.SerialConsole, error)
}

// Errors a Backend returns, mapped to HTTP statuses here.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	ErrInvalid  = errors.New("invalid request")
)

// Listen creates the socket at path with permissions that let only the
// daemon's user (and root) in, replacing a stale socket file.
func Listen(path string) (net.Listener, error) {
	if err := safedir.Ensure(filepath.Dir(path), "management socket directory"); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("management socket %s: another daemon is listening", path)
		}
		_ = os.Remove(path)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("management socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("management socket: %w", err)
	}
	return l, nil
}

// Handler routes the API.
func Handler(b Backend, log *slog.Logger) http.Handler {
	s := &server{b: b, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/bmcs", func(w http.ResponseWriter, _ *http.Request) { reply(w, b.BMCs(), nil) })
	mux.HandleFunc("GET /v1/bmcs/{id}", func(w http.ResponseWriter, r *http.Request) {
		bmc, err := b.BMC(r.PathValue("id"))
		reply(w, bmc, err)
	})
	mux.HandleFunc("POST /v1/bmcs", s.add)
	mux.HandleFunc("POST /v1/bmcs:all", s.addAll)
	mux.HandleFunc("DELETE /v1/bmcs/{id}", s.change("removed", b.Remove))
	mux.HandleFunc("POST /v1/bmcs/{id}/stop", s.change("stop", b.Stop))
	mux.HandleFunc("POST /v1/bmcs/{id}/start", s.change("start", b.Start))
	mux.HandleFunc("GET /v1/bmcs/{id}/console", s.console)        // console.go
	mux.HandleFunc("GET /v1/bmcs/{id}/console/log", s.consoleLog) // console.go
	mux.HandleFunc("GET /v1/vms", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		vms, err := b.VMs(r.Context(), VMQuery{Filter: q.Get("filter"), Folder: q.Get("folder"), Tag: q.Get("tag"), VCenter: q.Get("vcenter")})
		reply(w, vms, err)
	})
	mux.HandleFunc("POST /v1/check", func(w http.ResponseWriter, r *http.Request) { reply(w, b.Check(r.Context()), nil) })
	mux.HandleFunc("POST /v1/bmh", s.bmh)
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, _ *http.Request) {
		replyStatus(w, http.StatusNoContent, nil, b.Reload())
	})
	return mux
}

// server answers the requests that decode a body or log a change.
type server struct {
	b   Backend
	log *slog.Logger
}

func (s *server) add(w http.ResponseWriter, r *http.Request) {
	var req Add
	if err := decode(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	bmc, err := s.b.Add(r.Context(), req)
	if err == nil {
		s.log.Info("bmc added", "vm", req.VM, "address", bmc.Address)
	}
	replyStatus(w, http.StatusCreated, bmc, err)
}

func (s *server) addAll(w http.ResponseWriter, r *http.Request) {
	var req AddAll
	if err := decode(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	bmcs, err := s.b.AddAll(r.Context(), req)
	replyStatus(w, http.StatusCreated, bmcs, err)
}

// change applies fn to the BMC the path names and logs "bmc " + done.
func (s *server) change(done string, fn func(id string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		err := fn(r.PathValue("id"))
		if err == nil {
			s.log.Info("bmc "+done, "bmc", r.PathValue("id"))
		}
		replyStatus(w, http.StatusNoContent, nil, err)
	}
}

func (s *server) bmh(w http.ResponseWriter, r *http.Request) {
	var req BMH
	if err := decode(r, &req); err != nil {
		reply(w, nil, err)
		return
	}
	out, err := s.b.BMH(r.Context(), req)
	if err != nil {
		reply(w, nil, err)
		return
	}
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(out)
}

// maxBody bounds request bodies: the API takes small JSON documents.
const maxBody = 1 << 20

func decode(r *http.Request, v any) error {
	d := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: body: %v", ErrInvalid, err)
	}
	return nil
}

func reply(w http.ResponseWriter, v any, err error) { replyStatus(w, http.StatusOK, v, err) }

func replyStatus(w http.ResponseWriter, status int, v any, err error) {
	if err != nil {
		status = http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrNotFound):
			status = http.StatusNotFound
		case errors.Is(err, ErrConflict):
			status = http.StatusConflict
		case errors.Is(err, ErrInvalid):
			status = http.StatusBadRequest
		}
		v = Error{Error: err.Error()}
	}
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
