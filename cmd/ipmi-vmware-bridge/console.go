package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/api"
)

// eofLinger is how long `console` goes on printing once its input ended
// and the console is quiet: keystrokes from a pipe get their answer (an
// echo, a prompt) within moments, and the console never ends by itself.
const eofLinger = time.Second

func (c cli) consoleCommand(o *clientOpts) *cobra.Command {
	var logOnly bool
	cmd := &cobra.Command{
		Use:   "console VM [--log]",
		Short: "Attach to the serial console of a VM's BMC (VM: its name or the BMC's address:port); ~. leaves",
		Long: "Attach to the serial console of a VM's BMC: what is kept of the VM's output is printed,\n" +
			"then its output as it comes, and what is typed goes to the VM (the terminal in raw mode).\n" +
			"~. at the start of a line leaves, ~~ sends a ~, as with ipmitool and ssh. With --log, print\n" +
			"what is kept of the output and exit. The BMC must offer its console (bmcs[].console).",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usagef("console: one VM, by its name or its BMC's address:port")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if logOnly {
				return o.client().ConsoleLog(cmd.Context(), args[0], c.stdout)
			}
			return c.attach(cmd.Context(), o.client(), args[0])
		},
	}
	cmd.Flags().BoolVar(&logOnly, "log", false, "print what is kept of the console's output and exit")
	cmd.Flags().StringVar(&o.socket, "socket", api.DefaultSocket(), "the daemon's management socket")
	return cmd
}

// attach runs an interactive console session on the BMC id names until
// ~. is typed, the input ends (and the output has been quiet for
// eofLinger) or the console ends.
func (c cli) attach(ctx context.Context, cl *api.Client, id string) error {
	stream, err := cl.Console(ctx, id)
	if err != nil {
		return err
	}
	defer stream.Close()
	if f, ok := c.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		// Raw: every key goes to the VM as typed (Ctrl-C included), and
		// its echo, not the terminal's, shows.
		old, err := term.MakeRaw(int(f.Fd()))
		if err != nil {
			return fmt.Errorf("console: the terminal: %w", err)
		}
		defer func() { _ = term.Restore(int(f.Fd()), old) }()
	}
	fmt.Fprintf(c.stderr, "[attached to the serial console of %s; ~. at the start of a line leaves]\r\n", id)
	printed := make(chan struct{}, 1)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		_, _ = io.Copy(notifyingWriter{c.stdout, printed}, stream)
	}()
	typed := make(chan error, 1)
	go func() { typed <- typeKeys(c.stdin, stream) }()
	select {
	case err := <-typed:
		if errors.Is(err, errLeave) {
			fmt.Fprint(c.stderr, "\r\n[detached]\r\n")
			return nil
		}
		linger(printed, ended)
		select {
		case <-ended: // a failed write is the console's end, told below
		default:
			return err
		}
	case <-ended:
	}
	fmt.Fprint(c.stderr, "\r\n[the console ended]\r\n")
	return nil
}

// linger returns once nothing was printed for eofLinger, or the output
// ended.
func linger(printed, ended <-chan struct{}) {
	t := time.NewTimer(eofLinger)
	defer t.Stop()
	for {
		select {
		case <-printed:
			t.Reset(eofLinger)
		case <-t.C:
			return
		case <-ended:
			return
		}
	}
}

// notifyingWriter writes to w and signals each write on printed.
type notifyingWriter struct {
	w       io.Writer
	printed chan<- struct{}
}

func (n notifyingWriter) Write(p []byte) (int, error) {
	select {
	case n.printed <- struct{}{}:
	default:
	}
	return n.w.Write(p)
}

// errLeave: the escape sequence was typed.
var errLeave = errors.New("left")

// typeKeys copies in to w through the escape filter: errLeave when ~.
// was typed, nil at the end of in.
func typeKeys(in io.Reader, w io.Writer) error {
	e := escaper{lineStart: true}
	buf := make([]byte, 1024)
	for {
		n, rerr := in.Read(buf)
		out, leave := e.filter(buf[:n])
		if rerr != nil {
			out = append(out, e.flush()...)
		}
		if len(out) > 0 {
			if _, err := w.Write(out); err != nil {
				return fmt.Errorf("console: %w", err)
			}
		}
		switch {
		case leave:
			return errLeave
		case errors.Is(rerr, io.EOF):
			return nil
		case rerr != nil:
			return rerr
		}
	}
}

// escaper finds ssh's and ipmitool's escape sequences in keystrokes: a ~
// at the start of a line is held; ~. leaves, ~~ sends one ~, and ~ with
// anything else sends both.
type escaper struct {
	lineStart, tilde bool
}

// filter returns the keystrokes of p to send, and whether ~. was typed
// (what follows it is dropped).
func (e *escaper) filter(p []byte) ([]byte, bool) {
	out := make([]byte, 0, len(p))
	for _, b := range p {
		if e.tilde {
			e.tilde = false
			switch b {
			case '.':
				return out, true
			case '~':
				out = append(out, '~')
				e.lineStart = false
				continue
			}
			out = append(out, '~')
		}
		if e.lineStart && b == '~' {
			e.tilde = true
			continue
		}
		out = append(out, b)
		e.lineStart = b == '\r' || b == '\n'
	}
	return out, false
}

// flush returns a ~ held at the end of the input.
func (e *escaper) flush() []byte {
	if e.tilde {
		e.tilde = false
		return []byte{'~'}
	}
	return nil
}
