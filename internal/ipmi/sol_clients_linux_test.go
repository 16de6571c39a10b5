package ipmi

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ipmi-vmware-bridge/ipmi-vmware-bridge/internal/clienttest"
)

// runStatus runs a client to completion and returns its combined output
// and exit status, for the commands whose failures are the point.
func runStatus(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(clienttest.Tool(t, name), args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("%s: %v", name, err)
	return "", 0
}

// `ipmitool sol activate` on a terminal, as an operator runs it: it shows
// the end of the VM's earlier output and what the VM prints, types at
// the VM, and `~.` leaves, deactivating the payload and closing the
// session. Meanwhile a second activation is refused (80h), and `sol
// deactivate` elsewhere frees the payload.
func TestSOLIpmitoolActivate(t *testing.T) {
	t.Parallel()
	tg := serveSOL(t, Config{})
	tg.c.Print("Debian GNU/Linux 12 vm ttyS0\r\n\r\nvm login: ")
	base := lanplus(tg.e.port(), "password")

	sol := clienttest.StartPTY(t, "ipmitool", append(base, "sol", "activate")...)
	sol.Expect("[SOL Session operational.  Use ~? for help]")
	sol.Expect("vm login: ")
	sol.Type("root\r")
	clienttest.Eventually(t, "keystrokes typed", func() bool { return tg.c.Typed() == "root\r" })
	sol.Expect("vm login: root")
	tg.c.Print("\nPassword: ")
	sol.Expect("Password: ")

	out, status := runStatus(t, "ipmitool", append(base, "sol", "activate")...)
	if status != 1 || !strings.Contains(out, "Info: SOL payload already active on another session") {
		t.Fatalf("second sol activate: status %d\n%s", status, out)
	}

	sol.Type("\r~.")
	if status := sol.Exit(); status != 0 {
		t.Fatalf("ipmitool after ~.: status %d\n%s", status, sol.Output())
	}
	clienttest.Eventually(t, "payload deactivated", func() bool { active, _, _, _ := tg.obs.read(); return active == 0 })
	clienttest.Eventually(t, "session closed", func() bool { return len(tg.e.Sessions()) == 0 })

	sol = clienttest.StartPTY(t, "ipmitool", append(base, "sol", "activate")...)
	sol.Expect("[SOL Session operational.  Use ~? for help]")
	for _, want := range []struct {
		status int
		out    string
	}{{0, ""}, {1, "Info: SOL payload already de-activated"}} {
		out, status := runStatus(t, "ipmitool", append(base, "sol", "deactivate")...)
		if status != want.status || !strings.Contains(out, want.out) {
			t.Fatalf("sol deactivate: status %d, want %d\n%s", status, want.status, out)
		}
	}
}

// ipmitool's other SOL commands: `sol info` shows the configuration with
// the endpoint's own port, `sol payload status` the admin's access, and
// `sol looptest` (activate and deactivate in one session) passes, which
// it does only if a console deactivating its own payload is not sent the
// deactivating notice. Ironic's privilege and the Operator one activate;
// User does not.
func TestSOLIpmitoolCommands(t *testing.T) {
	t.Parallel()
	tg := serveSOL(t, Config{})
	port := tg.e.port()
	for _, tc := range []struct {
		args   []string
		status int
		want   []string
	}{
		{[]string{"sol", "info"}, 0, []string{
			`^Enabled\s+: true$`, `^Force Encryption\s+: true$`, `^Force Authentication\s+: true$`,
			`^Privilege Level\s+: OPERATOR$`, `^Character Accumulate Level \(ms\)\s+: 20$`,
			`^Character Send Threshold\s+: 251$`, `^Retry Count\s+: 7$`, `^Retry Interval \(ms\)\s+: 200$`,
			`^Payload Port\s+: ` + port + `$`,
		}},
		{[]string{"sol", "payload", "status", "1", "2"}, 0, []string{`^User 2 on channel 1 is enabled$`}},
		{[]string{"sol", "looptest", "3", "10"}, 0, []string{`^remain loop test counter: 1$`}},
		{[]string{"-L", "ADMINISTRATOR", "sol", "looptest", "1", "10"}, 0, []string{`^remain loop test counter: 1$`}},
		{[]string{"-L", "OPERATOR", "sol", "looptest", "1", "10"}, 0, []string{`^remain loop test counter: 1$`}},
		{[]string{"-L", "USER", "sol", "looptest", "1", "10"}, 1, []string{`^Error activating SOL payload: Insufficient privilege level$`}},
		{[]string{"sol", "set", "enabled", "false"}, 1, []string{`Attempt to write read-only parameter`}},
	} {
		out, status := runStatus(t, "ipmitool", append(lanplus(port, "password"), tc.args...)...)
		if status != tc.status || (status == 0 && strings.Contains(out, "looptest failed")) {
			t.Errorf("ipmitool %v: status %d, want %d\n%s", tc.args, status, tc.status, out)
		}
		wantLines(t, out, tc.want...)
	}
}

// FreeIPMI's ipmiconsole shows output and types, and by default steals
// the payload from another console, which is told ("[SOL session
// stolen]") and leaves; with --dont-steal it is refused instead.
func TestSOLIpmiconsole(t *testing.T) {
	t.Parallel()
	// ipmiconsole 1.6.10 takes no port above 32767 ("hostname invalid").
	tg := serveSOL(t, Config{Address: lowPort(t)})
	tg.c.Print("vm login: ")
	conn := []string{"-h", "127.0.0.1:" + tg.e.port(), "-u", "admin", "-p", "password"}

	first := clienttest.StartPTY(t, "ipmiconsole", conn...)
	first.Expect("[SOL established]")
	first.Expect("vm login: ")
	first.Type("admin\r")
	clienttest.Eventually(t, "keystrokes typed", func() bool { return tg.c.Typed() == "admin\r" })
	first.Expect("vm login: admin")

	if out, _ := runStatus(t, "ipmiconsole", append(conn, "--dont-steal")...); !strings.Contains(out, "[error received]: SOL in use") {
		t.Fatalf("ipmiconsole --dont-steal:\n%s", out)
	}

	second := clienttest.StartPTY(t, "ipmiconsole", conn...)
	second.Expect("[SOL established]")
	first.Expect("[SOL session stolen]")
	first.Exit()
	tg.c.Print("\r\nafter the steal")
	second.Expect("after the steal")
	second.Type("&.")
	if status := second.Exit(); status != 0 {
		t.Fatalf("ipmiconsole after &.: status %d\n%s", status, second.Output())
	}
	clienttest.Eventually(t, "payload deactivated", func() bool { active, _, _, _ := tg.obs.read(); return active == 0 })
}

// Ironic's ipmitool-socat console, with Ironic's command lines: `sol
// deactivate` first (status 0 or 1 accepted), then socat serving TCP with
// `ipmitool sol activate` on a pty for each connection. A TCP client sees
// the VM's output and types at it. When the client leaves, socat kills
// ipmitool, which neither deactivates nor closes its session, so the next
// client finds the payload active until Ironic's next `sol deactivate`
// (it runs one for every get_console) or the session's expiry.
func TestSOLIronicSocat(t *testing.T) {
	t.Parallel()
	socat := clienttest.Tool(t, "socat")
	tg := serveSOL(t, Config{})
	tg.c.Print("vm login: ")
	pw := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(pw, []byte("password"), 0o600); err != nil {
		t.Fatal(err)
	}
	ipmitool := clienttest.Tool(t, "ipmitool") + " -I lanplus -H 127.0.0.1 -L ADMINISTRATOR -p " + tg.e.port() + " -U admin -f " + pw
	deactivate := func() int {
		_, status := runStatus(t, "sh", "-c", ipmitool+" sol deactivate")
		return status
	}
	if status := deactivate(); status != 1 {
		t.Fatalf("sol deactivate of an inactive payload: status %d, want 1", status)
	}
	tcp := freeTCPPort(t)
	cmd := exec.Command(socat, "TCP4-LISTEN:"+tcp+",bind=127.0.0.1,reuseaddr,fork,max-children=1",
		`EXEC:"`+ipmitool+` sol activate",pty,stderr`)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	first := dialTCP(t, tcp)
	first.expect("vm login: ")
	first.send("root\r")
	clienttest.Eventually(t, "keystrokes typed", func() bool { return tg.c.Typed() == "root\r" })
	first.expect("vm login: root")
	first.close()

	// max-children=1: socat accepts the next client once the first one's
	// ipmitool is gone.
	second := dialTCP(t, tcp)
	second.expect("Info: SOL payload already active on another session")
	second.close()
	if status := deactivate(); status != 0 {
		t.Fatalf("Ironic's sol deactivate of the orphaned payload: status %d", status)
	}
	third := dialTCP(t, tcp)
	third.expect("vm login: root")
	third.close()
}

// lowPort is a loopback UDP address with a port below 32768, free a
// moment ago: Linux draws ephemeral ports above.
func lowPort(t *testing.T) string {
	t.Helper()
	for range 50 {
		addr := "127.0.0.1:" + strconv.Itoa(10000+rand.IntN(22000))
		if c, err := net.ListenPacket("udp", addr); err == nil {
			_ = c.Close()
			return addr
		}
	}
	t.Fatal("no free UDP port below 32768")
	return ""
}

// freeTCPPort is a TCP port free on 127.0.0.1 a moment ago.
func freeTCPPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// tcpClient is a TCP client of Ironic's console port, as the console
// proxy in front of it is.
type tcpClient struct {
	t    *testing.T
	c    net.Conn
	out  clienttest.Buffer
	done chan struct{}
}

func dialTCP(t *testing.T, port string) *tcpClient {
	t.Helper()
	var c net.Conn
	clienttest.Eventually(t, "socat listening", func() bool {
		var err error
		c, err = net.Dial("tcp", "127.0.0.1:"+port)
		return err == nil
	})
	tc := &tcpClient{t: t, c: c, done: make(chan struct{})}
	go func() {
		defer close(tc.done)
		_, _ = io.Copy(&tc.out, c) // until either end closes
	}()
	t.Cleanup(tc.close)
	return tc
}

func (tc *tcpClient) send(s string) {
	if _, err := tc.c.Write([]byte(s)); err != nil {
		tc.t.Fatal(err)
	}
}

// expect waits up to clienttest.Patience for the connection to deliver s.
func (tc *tcpClient) expect(s string) {
	tc.t.Helper()
	if !tc.out.Await(s) {
		tc.t.Fatalf("the console port did not deliver %q; it delivered:\n%s", s, tc.out.String())
	}
}

func (tc *tcpClient) close() {
	_ = tc.c.Close()
	<-tc.done
}

// pyghmi's Console: output and input, refused while another console
// holds the payload, and taking it over with force=True, the console it
// took the payload from told.
func TestSOLPyghmiConsole(t *testing.T) {
	t.Parallel()
	python := clienttest.PythonModule(t, "pyghmi.ipmi.console")
	tg := serveSOL(t, Config{})
	tg.c.Print("vm login: ")
	holder := dialRaw(t, tg.addr, "127.0.0.1", 4)
	if cc := holder.activate(); cc != 0 {
		t.Fatalf("activate: %02x", cc)
	}
	const script = `
import sys, time
from pyghmi.ipmi import console
out = []
c = console.Console(bmc='127.0.0.1', userid='admin', password='password', iohandler=out.append,
                    port=int(sys.argv[1]), force=sys.argv[2] == 'force')
deadline = time.time() + 10
typed = False
while time.time() < deadline:
    console.Console.wait_for_rsp(0.1)
    text = ''.join(x.decode('latin-1') if isinstance(x, bytes) else str(x) for x in out)
    if not typed and 'vm login: ' in text:
        c.send_data('pyghmi\r')
        typed = True
    if 'vm login: pyghmi' in text or 'error' in text:
        break
print(text)
c.close()
console.Console.wait_for_rsp(0.5)
`
	for _, tc := range []struct {
		force string
		want  string
	}{
		{"no", "SOL Session active for another client"},
		{"force", "vm login: pyghmi"},
	} {
		out, err := exec.Command(python, "-c", script, tg.e.port(), tc.force).CombinedOutput()
		if err != nil || !strings.Contains(string(out), tc.want) {
			t.Fatalf("pyghmi force=%s: %v\n%s", tc.force, err, out)
		}
	}
	if got := tg.c.Typed(); got != "pyghmi\r" {
		t.Fatalf("typed %q", got)
	}
	if !holder.notice(time.Second) {
		t.Fatal("the console pyghmi took over was not told")
	}
}

// `ipmitool sol activate` through a port-translating relay that loses a
// third of the SOL packets each way, the endpoint told the relay's port
// (Config.SOLPort) as a bridge behind NAT is: every line the VM prints
// arrives, in order, through the BMC's retries and the console's ACKs.
func TestSOLThroughLossyNAT(t *testing.T) {
	t.Parallel()
	addr := lowPort(t)
	bmcAddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	loss := rand.New(rand.NewPCG(1, 2))
	r := lossyRelay(t, bmcAddr, func(p []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		return len(p) > 5 && p[5]&0x3F == payloadSOL && loss.Float64() < 1.0/3
	})
	relayPort := r.front.LocalAddr().(*net.UDPAddr).Port
	tg := serveSOL(t, Config{Address: addr, SOLPort: relayPort})
	sol := clienttest.StartPTY(t, "ipmitool", append(lanplus(strconv.Itoa(relayPort), "password"), "sol", "activate")...)
	sol.Expect("[SOL Session operational.  Use ~? for help]")
	var want strings.Builder
	for i := range 100 {
		line := fmt.Sprintf("line %03d of the boot log, and some more text to fill it\r\n", i)
		want.WriteString(line)
		tg.c.Print(line)
	}
	sol.Expect(want.String())
	sol.Type("\r~.")
	sol.Exit()
}
