#!/usr/bin/env bash
# scripts/bench.sh: the bridge's IPMI endpoints against three other IPMI BMC
# implementations, and the bridge's Redfish service, in one run on this
# machine, everything on 127.0.0.1. The figure that matters is the server's
# CPU time per request: the machine may be shared and noisy, which moves
# wall times a lot and CPU times little.
#
# Endpoints:
#   bridge    this repository's ipmi-vmware-bridge: `serve --config` against
#             its vCenter simulator run as a process of its own
#             (scripts/bench/vcsim, which writes the configuration), as a
#             real vCenter is another machine, with $VMS VMs, so one process
#             serves $VMS BMCs (the workloads use the first); VCENTER=embedded
#             measures `serve` in simulator mode instead, the simulator's own
#             CPU then counted as the bridge's; built once with go build
#             (BRIDGE= and VCSIM= binaries skip it)
#   ipmi_sim  OpenIPMI's BMC simulator (Debian package openipmi), one BMC,
#             configured by scripts/bench/ipmi_sim/{lan.conf.in,bmc.emu}
#   go-ipmi   goipmi-server, the reference server of github.com/bougou/go-ipmi
#             (the version in go.mod), one BMC; built once with `go build
#             github.com/bougou/go-ipmi/cmd/goipmi-server` from the module
#             (when go.sum lacks entries: with GOFLAGS=-mod=mod and -modfile
#             pointing at a temporary copy of go.mod/go.sum, so the repository's
#             own files are never changed); GOIPMI=binary skips the build. It
#             listens on every address (":PORT"), on a free port.
#   pyghmi    pyghmi.ipmi.bmc.Bmc (Debian python3-pyghmi, the engine of
#             virtualbmc), one BMC, scripts/bench/pyghmi_bmc.py run with
#             $PYTHON
# All answer user admin, password password.
#
# Rounds: $ROUNDS interleaved rounds. Round 1 runs every endpoint through
# every workload, then round 2 does it all again, then round 3, so that the
# machine's noise falls on all endpoints alike; the table gives the median of
# the rounds. In a round each endpoint is started, measured and stopped
# before the next is started: starting one costs a second or two, a fresh
# process per round makes its idle RSS an independent sample, and no other
# BMC of ours (idle timers, memory) runs beside the one being measured.
#
# Workloads, the same for every endpoint, all `ipmitool -I lanplus -H
# 127.0.0.1 -p PORT -U admin -P password`, FILE holding $LINES lines of
# `power status`:
#   stream1    one `ipmitool ... exec FILE`: one session, $LINES requests
#   stream8    $STREAMS such exec streams concurrently, no -C (ipmitool asks for
#              the cipher suites and picks the best: 17 where offered),
#              started $STREAM_STAGGER_MS ms apart (see below); wall time is
#              from the first start to the last end
#   stream8c3  the same with -C 3 (HMAC-SHA1, AES-128: all four offer it)
#   setup      $RUNS whole `ipmitool -C 3 ... power status` processes, one
#              after the other (each: Get Channel Auth Capabilities, Open
#              Session, RAKP 1 and 3, Get Chassis Status, Close Session),
#              started at most $SETUP_RATE a second
#   memory     VmRSS (/proc/PID/status, child processes included) divided by
#              the BMCs the process serves, idle after start and after the
#              workloads
#   idle CPU   the server's CPU time per second while it idles during the
#              $PAUSE s pauses before each workload (background work, e.g.
#              the bridge's vCenter heartbeat and inventory watch)
# Each workload is preceded by $PAUSE idle seconds. The bridge limits session
# setup per source address and BMC to 100 packets a second in bursts of 200
# (guard.Default in internal/guard/guard.go; ipmi.sessionSetupRate in a
# config file); an ipmitool login sends 3 (Open Session, RAKP 1, RAKP 3). The
# pause refills that bucket (2 s suffice) and `setup` is paced to $SETUP_RATE
# processes a second (60 packets a second at 20) for every endpoint alike,
# so the limit is never reached. The bridge also keeps at most 8 session
# setups in progress per source address and BMC (perSourcePending in
# internal/ipmi/handshakes.go): a 5th Open Session evicts the oldest setup
# not yet answered with RAKP 2 (whose RAKP 1 then goes unanswered, and
# ipmitool retries after 1 s) or, if there is none, is refused with
# "insufficient resources for session". $STREAMS ipmitool processes started
# at the same instant from 127.0.0.1 run into that now and then (8 of 640
# streams in a test here; none with a 25 ms stagger), so the streams are
# started $STREAM_STAGGER_MS ms apart, for every endpoint alike. If ipmitool
# still reports an unanswered RAKP message or a refused session, the notes
# say so.
#
# Redfish (bridge only), after the IPMI rounds: two more bridge processes,
# one with 5 VMs, one with $REDFISH_VMS (`serve --vms N --base-port P`, one
# UDP port per VM in a free range below 32768, Redfish on a free port), both
# started once; their start time (launch to banner and a first Redfish
# answer; the simulator creating the VMs included) and RSS are reported. In
# each of $ROUNDS rounds, after $PAUSE idle seconds, scripts/bench/
# redfish_get.py (one keep-alive HTTPS connection, certificate not
# verified, HTTP Basic admin/password) GETs /redfish/v1/Systems/<first VM>
# $REDFISH_N times from each. If the $REDFISH_VMS-VM process fails to start
# for a reason in the bridge, each smaller count in $REDFISH_FALLBACK is
# tried in turn and the first that starts is used; the table says so. (In
# simulator mode `serve` waits 10 s for its first inventory sync and exits
# if no BMC could start by then; at 10,000 VMs on a loaded 2-core machine
# that sync has been seen to take longer.)
#
# Measurement: server CPU is the CPU time of the server process and its
# descendants, read just before and just after a workload (so it includes
# what the server does in the background meanwhile; see the idle CPU row).
# Two clocks are read: utime+stime+cutime+cstime (fields 14-17 of
# /proc/PID/stat), in clock ticks of 1/`getconf CLK_TCK` s (10 ms here),
# and the run time of every thread (first field of /proc/PID/task/TID/
# schedstat, in ns). The ticks are too coarse for short windows (ipmi_sim
# spends well under one tick on a hundred logins), so with CPU_CLOCK=auto
# the figures come from schedstat when the kernel has it, and the notes
# compare both clocks' totals per endpoint; CPU_CLOCK=stat uses the ticks.
# Reported: server CPU µs per answered request (streams, Redfish) and server
# CPU ms per ipmitool process (setup), beside wall time, requests/s and
# p50/p95 wall time per process; and each IPMI CPU figure "net of idle":
# less the idle rate (same endpoint, same round) times the workload's wall
# time, i.e. without the server's background work (for the bridge its
# vCenter heartbeat, and with VCENTER=embedded the simulator's timers,
# which a bridge with a real vCenter does not carry). Wall times include ipmitool's own start and, for streams
# without -C to a BMC that never answers Get Channel Cipher Suites
# (ipmi_sim), ipmitool's 10 s wait for that answer; the CPU figures do not
# depend on either. goipmi-server takes at most 4 sessions at once: its
# streams beyond 4 are refused, as the notes then say.
#
# Output: progress on stderr; on stdout one Markdown table (ready for
# README.md) with the median of the rounds per endpoint and workload, each
# peer's figure with its ratio against ipmi_sim's in parentheses, a column
# of the bridge/ipmi_sim ratios of the CPU figures per round and a final
# column of bridge/ipmi_sim of the medians; then the Redfish rows and notes.
# An endpoint that cannot be started, or a workload that fails or times out
# against it, shows "failed: reason" or "timeout" in its cells; the script
# carries on.
#
# Run:    ./scripts/bench.sh                  (as root it apt-get installs
#                                              openipmi / python3-pyghmi /
#                                              ipmitool when they are missing)
#         QUICK=1 ./scripts/bench.sh          (a smoke run, under 2 minutes)
# Env:    ROUNDS=3 LINES=2000 STREAMS=8 RUNS=100 VMS=50
#         QUICK=0              1: defaults become ROUNDS=1 LINES=200 RUNS=10
#                              REDFISH_N=200 REDFISH_VMS=200 PAUSE=1 (values
#                              given explicitly still win)
#         SETUP_RATE=20        most `setup` processes started per second
#         STREAM_STAGGER_MS=25 milliseconds between the starts of the streams
#                              of stream8 and stream8c3 (0: all at once)
#         CPU_CLOCK=auto       schedstat (ns) when available, else stat
#                              (ticks); or name one
#         PAUSE=3              idle seconds before each workload
#         REDFISH_N=2000       Redfish GETs per measurement
#         REDFISH_VMS=10000    VMs of the large Redfish bridge
#         REDFISH_FALLBACK="7500 6000 5000 2000 1000"
#                              smaller counts to try if that one cannot start
#         REDFISH_BASE_PORT=   first UDP port of the large bridge (default:
#                              the first free range found from 20000 down)
#         REDFISH_START_TIMEOUT=900  seconds allowed to its start
#         CALL_TIMEOUT=30      seconds allowed to one ipmitool process (setup)
#         STREAM_TIMEOUT=300   seconds allowed to one exec stream
#         BUDGET=600           seconds for `setup` on one endpoint in one
#                              round; runs left when it is spent are skipped
#         AUTO_INSTALL=1       apt-get install missing tools when root
#         PYTHON=/usr/bin/python3  runs pyghmi and the Redfish client
#         BRIDGE=              a prebuilt bridge binary (default: go build)
#         VCSIM=               a prebuilt scripts/bench/vcsim (default: go build)
#         VCENTER=process      process: the simulator apart; embedded: inside
#         GOIPMI=              a prebuilt goipmi-server (default: go build)
#         OUT=                 also write the table to this file
#         KEEP=0               1 keeps the temporary directory (logs)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$ROOT/scripts/bench
LOG_TAG=bench
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

QUICK=${QUICK:-0}
quick() { # value-when-QUICK=1 value-otherwise
	if [[ $QUICK == 1 ]]; then echo "$1"; else echo "$2"; fi
}
ROUNDS=${ROUNDS:-$(quick 1 3)}
LINES=${LINES:-$(quick 200 2000)}
STREAMS=${STREAMS:-8}
RUNS=${RUNS:-$(quick 10 100)}
VMS=${VMS:-50}
SETUP_RATE=${SETUP_RATE:-20}
STREAM_STAGGER_MS=${STREAM_STAGGER_MS:-25}
PAUSE=${PAUSE:-$(quick 1 3)}
REDFISH_N=${REDFISH_N:-$(quick 200 2000)}
REDFISH_VMS=${REDFISH_VMS:-$(quick 200 10000)}
REDFISH_FALLBACK=${REDFISH_FALLBACK:-7500 6000 5000 2000 1000}
REDFISH_BASE_PORT=${REDFISH_BASE_PORT:-}
REDFISH_START_TIMEOUT=${REDFISH_START_TIMEOUT:-900}
CALL_TIMEOUT=${CALL_TIMEOUT:-30}
STREAM_TIMEOUT=${STREAM_TIMEOUT:-300}
BUDGET=${BUDGET:-600}
AUTO_INSTALL=${AUTO_INSTALL:-1}
PYTHON=${PYTHON:-/usr/bin/python3}
BRIDGE=${BRIDGE:-}
VCSIM=${VCSIM:-}
VCENTER=${VCENTER:-process}
[[ $VCENTER == process || $VCENTER == embedded ]] || { echo "VCENTER must be process or embedded (got '$VCENTER')" >&2; exit 1; }
GOIPMI=${GOIPMI:-}
OUT=${OUT:-}
KEEP=${KEEP:-0}

HOST=127.0.0.1
IPMI_USER='admin'
IPMI_PASS='password'
ENDPOINTS=(bridge ipmi_sim goipmi pyghmi)
declare -A LABEL=([bridge]=bridge [ipmi_sim]=ipmi_sim [goipmi]=go-ipmi [pyghmi]=pyghmi
	[rffew]="bridge for Redfish, few VMs" [rfbig]="bridge for Redfish, many VMs")
WORKLOADS=(stream1 stream8 stream8c3 setup)
RF_FEW=5 # VMs of the small Redfish bridge: the simulator's five named VMs

[[ $QUICK == 0 || $QUICK == 1 ]] || die "QUICK must be 0 or 1 (got '$QUICK')"
check_int ROUNDS "$ROUNDS" 20
check_int RUNS "$RUNS" 10000
check_int LINES "$LINES" 100000
check_int STREAMS "$STREAMS" 64
check_int VMS "$VMS" 1000
check_int SETUP_RATE "$SETUP_RATE" 1000
check_int REDFISH_N "$REDFISH_N" 1000000
check_int REDFISH_VMS "$REDFISH_VMS" 30000
check_int REDFISH_START_TIMEOUT "$REDFISH_START_TIMEOUT" 36000
check_int CALL_TIMEOUT "$CALL_TIMEOUT" 3600
check_int STREAM_TIMEOUT "$STREAM_TIMEOUT" 36000
check_int BUDGET "$BUDGET" 86400
if ! [[ $STREAM_STAGGER_MS =~ ^[0-9]+$ ]] || ((STREAM_STAGGER_MS > 10000)); then
	die "STREAM_STAGGER_MS must be a whole number of milliseconds up to 10000 (got '$STREAM_STAGGER_MS')"
fi
[[ $PAUSE =~ ^[0-9]+$ ]] || die "PAUSE must be a whole number of seconds (got '$PAUSE')"
for n in $REDFISH_FALLBACK; do check_int REDFISH_FALLBACK "$n" 30000; done
if [[ -n $REDFISH_BASE_PORT ]]; then
	check_int REDFISH_BASE_PORT "$REDFISH_BASE_PORT" 65535
fi
CLK_TCK=$(getconf CLK_TCK)
check_int CLK_TCK "$CLK_TCK" 100000
CPU_CLOCK=${CPU_CLOCK:-auto}
case $CPU_CLOCK in
auto) if [[ -r /proc/self/schedstat ]]; then CPU_CLOCK=schedstat; else CPU_CLOCK=stat; fi ;;
stat) ;;
schedstat) [[ -r /proc/self/schedstat ]] || die "CPU_CLOCK=schedstat: no /proc/self/schedstat (kernel without CONFIG_SCHED_INFO)" ;;
*) die "CPU_CLOCK must be auto, schedstat or stat (got '$CPU_CLOCK')" ;;
esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ipmi-bench.XXXXXX")
cd "$WORK" # nothing is written anywhere else
# PID/PORT: running server processes; RES: results, keyed
# endpoint.workload.field.round; ERR: failures, keyed endpoint.workload.round
# (workload "start" for the endpoint itself); PREP: why an endpoint cannot run
# at all ("" when it can)
declare -A PID=() PORT=() NEP=() RES=() ERR=() PREP=() RAKP=() PROBE=()
CLIENT_PIDS=()
NOTES=()
ROUND=0
IDLE_CPU=0 # ns of server CPU during the pauses of this endpoint and round
IDLE_NS=0  # ns of those pauses
CPU_NS=0
declare -A XTICKS=() XNS=()

cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	for p in "${CLIENT_PIDS[@]}" "${PID[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
		local alive=0
		for p in "${CLIENT_PIDS[@]}" "${PID[@]}"; do
			if kill -0 "$p" 2>/dev/null; then alive=1; fi
		done
		((alive)) || break
		sleep 0.25
	done
	for p in "${CLIENT_PIDS[@]}" "${PID[@]}"; do
		kill -9 "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	finish_work "$rc"
}
on_exit cleanup

# ---------------------------------------------------------------- helpers

now_ns() { date +%s%N; }

# last non-empty line of a file, made safe for a Markdown table cell
last_line() {
	local l
	l=$(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1 || true)
	l=${l//|/\/}
	printf '%s' "${l:0:100}"
}

# first non-empty line of a file (ipmitool's most specific error), made safe
# for a Markdown table cell
first_line() {
	local l
	l=$(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | head -n 1 || true)
	l=${l//|/\/}
	printf '%s' "${l:0:100}"
}

free_udp_port() {
	"$PYTHON" -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null || shuf -i 20000-30999 -n 1
}

# first port P such that UDP ports P..P+N-1 on 127.0.0.1 are all free,
# searched from 20000 downwards (below the kernel's ephemeral range, where
# clients' ports come from), then upwards
free_udp_range() { # n
	"$PYTHON" - "$1" <<'EOF'
import socket, sys
n = int(sys.argv[1])
def free(base):
    for p in range(base, base + n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            return False
        finally:
            s.close()
    return True
top = min(20000, 32768 - n)
for base in list(range(top, 1023, -500)) + list(range(top + 500, 65536 - n, 500)):
    if base >= 1024 and base + n <= 65536 and free(base):
        print(base)
        sys.exit(0)
sys.exit(1)
EOF
}

# VmRSS of PID and its descendants, in kB
rss_kb() {
	local total=0 p v
	for p in $(tree_pids "$1"); do
		v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

# CPU time of PID and its descendants, "NS TICKS": NS sums the first field
# of /proc/P/task/T/schedstat (time on a CPU, ns) over their threads; TICKS
# sums utime, stime, cutime, cstime (fields 14-17 of /proc/P/stat; the text
# after the last ") " starts at field 3, so they are its 12th to 15th)
cpu_read() {
	local ns=0 ticks=0 p t a v
	for p in $(tree_pids "$1"); do
		v=$(awk '{sub(/^.*\) /, ""); print $12 + $13 + $14 + $15}' "/proc/$p/stat" 2>/dev/null || true)
		ticks=$((ticks + ${v:-0}))
		if [[ $CPU_CLOCK == schedstat ]]; then
			for t in "/proc/$p/task/"*/schedstat; do
				a=0
				{ read -r a _ <"$t"; } 2>/dev/null || true
				ns=$((ns + ${a:-0}))
			done
		fi
	done
	echo "$ns $ticks"
}

# the server CPU time between two cpu_read results, in ns, by CPU_CLOCK, into
# CPU_NS; both clocks are summed per endpoint for the cross-check note
cpu_account() { # name before after
	local n0 t0 n1 t1
	read -r n0 t0 <<<"$2"
	read -r n1 t1 <<<"$3"
	XTICKS[$1]=$((${XTICKS[$1]:-0} + t1 - t0))
	XNS[$1]=$((${XNS[$1]:-0} + n1 - n0))
	if [[ $CPU_CLOCK == schedstat ]]; then
		CPU_NS=$((n1 - n0))
	else
		CPU_NS=$(((t1 - t0) * (1000000000 / CLK_TCK)))
	fi
}

calc() { # awk expression with variables a, b, c -> result
	awk -v a="${2:-0}" -v b="${3:-0}" -v c="${4:-0}" "BEGIN { $1 }"
}

apt_install() { # package
	if [[ $AUTO_INSTALL != 1 || $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
		return 1
	fi
	log "installing $1 with apt-get"
	timeout 900 apt-get update -qq >"$WORK/apt-$1.log" 2>&1 || true
	DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq "$1" >>"$WORK/apt-$1.log" 2>&1
}

# one bounded ipmitool process; run in the background and waited for, so
# that INT and TERM are handled at once rather than when ipmitool returns
ipmi() { # port args...
	local port=$1 p rc=0
	shift
	timeout -k 2 "$CALL_TIMEOUT" ipmitool -I lanplus -H "$HOST" -p "$port" -U "$IPMI_USER" -P "$IPMI_PASS" "$@" &
	p=$!
	CLIENT_PIDS=("$p")
	wait "$p" || rc=$?
	CLIENT_PIDS=()
	return "$rc"
}

stop_endpoint() { # name
	local name=$1
	if [[ -n ${PID[$name.vcsim]:-} ]]; then
		kill "${PID[$name.vcsim]}" 2>/dev/null || true
		wait "${PID[$name.vcsim]}" 2>/dev/null || true
		unset "PID[$name.vcsim]"
	fi
	stop_pid "${PID[$name]:-}" 50
	unset "PID[$name]"
}

fail_start() { # name reason
	ERR[$1.start.$ROUND]=$2
	log "${LABEL[$1]:-$1}: $2"
	stop_endpoint "$1"
	return 1
}

# waits until the endpoint started this round answers `power status` (-C 3,
# so a peer that ignores Get Channel Cipher Suites is not slowed down); 0
# when it does, else fail_start with the last line of its log
answering() { # name
	wait_bmc "${PORT[$1]}" "${PID[$1]}" -C 3 ||
		fail_start "$1" "no answer on $HOST:${PORT[$1]}: $(last_line "$WORK/$1/r$ROUND/err")"
}

# 0 once a line of FILE matches ERE; 1 once PID has exited or the clock
# (now_ns) has passed DEADLINE
await_line() { # file ere pid deadline-ns
	until grep -qE "$2" "$1" 2>/dev/null; do
		kill -0 "$3" 2>/dev/null || return 1
		(($(now_ns) <= $4)) || return 1
		sleep 0.1
	done
}

# the idle seconds before a workload, during which the server's CPU time
# is counted as idle CPU
pause_idle() { # name
	local c0 c1 t0 t1
	c0=$(cpu_read "${PID[$1]}")
	t0=$(now_ns)
	sleep "$PAUSE"
	c1=$(cpu_read "${PID[$1]}")
	t1=$(now_ns)
	cpu_account "$1" "$c0" "$c1"
	IDLE_CPU=$((IDLE_CPU + CPU_NS))
	IDLE_NS=$((IDLE_NS + t1 - t0))
}

# ---------------------------------------------------------------- preparation

prepare_bridge() {
	local dir=$WORK/build
	mkdir -p "$dir"
	if [[ -n $BRIDGE ]]; then
		[[ -x $BRIDGE ]] || PREP[bridge]="BRIDGE=$BRIDGE is not executable"
		BRIDGE_REV="$BRIDGE ($("$BRIDGE" version 2>/dev/null | head -n 1 || true))"
		if [[ $VCENTER == process && -z $VCSIM ]]; then
			(cd "$ROOT" && timeout 900 go build -o "$dir/vcsim" ./scripts/bench/vcsim) >"$dir/vcsim.log" 2>&1 &&
				VCSIM=$dir/vcsim || PREP[bridge]="go build ./scripts/bench/vcsim: $(last_line "$dir/vcsim.log")"
		fi
		return 0
	fi
	log "bridge: go build ./cmd/ipmi-vmware-bridge"
	BRIDGE_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
	if [[ -n $(git -C "$ROOT" --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null || true) ]]; then
		BRIDGE_REV+=" with uncommitted changes"
	fi
	if (cd "$ROOT" && timeout 900 go build -o "$dir/ipmi-vmware-bridge" ./cmd/ipmi-vmware-bridge &&
		timeout 900 go build -o "$dir/vcsim" ./scripts/bench/vcsim) >"$dir/bridge.log" 2>&1; then
		BRIDGE=$dir/ipmi-vmware-bridge VCSIM=$dir/vcsim
	else
		PREP[bridge]="go build: $(last_line "$dir/bridge.log")"
	fi
}

prepare_goipmi() {
	local dir=$WORK/build pkg=github.com/bougou/go-ipmi/cmd/goipmi-server
	mkdir -p "$dir/gomod"
	if [[ -n $GOIPMI ]]; then
		[[ -x $GOIPMI ]] || PREP[goipmi]="GOIPMI=$GOIPMI is not executable"
		return 0
	fi
	log "go-ipmi: go build $pkg"
	if (cd "$ROOT" && timeout 900 go build -o "$dir/goipmi-server" "$pkg") >"$dir/goipmi.log" 2>&1; then
		GOIPMI=$dir/goipmi-server
		return 0
	fi
	# missing go.sum entries: resolve them in a copy of go.mod and go.sum
	log "go-ipmi: go build failed ($(last_line "$dir/goipmi.log")); again with -mod=mod on a copy of go.mod"
	cp "$ROOT/go.mod" "$dir/gomod/go.mod"
	if [[ -f $ROOT/go.sum ]]; then cp "$ROOT/go.sum" "$dir/gomod/go.sum"; fi
	if (cd "$ROOT" && GOFLAGS=-mod=mod timeout 900 go build -modfile="$dir/gomod/go.mod" -o "$dir/goipmi-server" "$pkg") \
		>>"$dir/goipmi.log" 2>&1; then
		GOIPMI=$dir/goipmi-server
	else
		PREP[goipmi]="go build $pkg: $(last_line "$dir/goipmi.log")"
	fi
}

prepare_ipmi_sim() {
	if ! command -v ipmi_sim >/dev/null; then
		apt_install openipmi || true
	fi
	command -v ipmi_sim >/dev/null || PREP[ipmi_sim]="ipmi_sim not installed (apt-get install openipmi)"
}

prepare_pyghmi() {
	if [[ ! -x $PYTHON ]]; then
		PREP[pyghmi]="no $PYTHON"
		return 0
	fi
	if ! "$PYTHON" -c 'import pyghmi.ipmi.bmc' 2>/dev/null; then
		apt_install python3-pyghmi || true
	fi
	if ! "$PYTHON" -c 'import pyghmi.ipmi.bmc' >"$WORK/build/pyghmi-import.log" 2>&1; then
		PREP[pyghmi]="$PYTHON cannot import pyghmi.ipmi.bmc: $(last_line "$WORK/build/pyghmi-import.log")"
	fi
}

# how the bridge was run, for the report
bridge_mode() {
	if [[ $VCENTER == embedded ]]; then
		echo "\`serve\` with the embedded vCenter simulator"
	else
		echo "\`serve --config\` against the vCenter simulator in a process of its own (scripts/bench/vcsim)"
	fi
}

# ---------------------------------------------------------------- endpoints
# start_NAME starts the endpoint for this round (logs in $WORK/NAME/rROUND),
# sets PID[NAME] and PORT[NAME], and returns 1, with the reason in ERR, if
# it cannot; run_endpoint then waits until it answers (answering).

# launches a bridge process in simulator mode; waits for its banner (or its
# exit, or timeout seconds); PID[key] holds it
launch_bridge() { # key dir vms base-port redfish-address timeout
	local key=$1 dir=$2 vms=$3 base=$4 rf=$5 limit=$6 deadline ready='^To bridge a real vCenter'
	mkdir -p "$dir"
	deadline=$(($(now_ns) + limit * 1000000000))
	if [[ $VCENTER == process ]]; then
		# The simulator in a process of its own, as a vCenter is: its
		# inventory watch ticks every 20 ms in govmomi's simulator, which
		# would count as the bridge's CPU in the same process.
		if ((base == 0)) && ! base=$(free_udp_range "$vms"); then return 1; fi
		"$VCSIM" -vms "$vms" -listen "$HOST" -base-port "$base" -config "$dir/bridge.yaml" \
			</dev/null >"$dir/vcsim.out" 2>&1 &
		PID[$key.vcsim]=$!
		await_line "$dir/vcsim.out" 'configuration in' "${PID[$key.vcsim]}" "$deadline" || return 1
		"$BRIDGE" serve --config "$dir/bridge.yaml" \
			--socket "$dir/api.sock" --metrics-address - --redfish-address "$rf" \
			</dev/null >"$dir/out" 2>"$dir/err" &
		ready='^VM +BMC'
	else
		"$BRIDGE" serve --vms "$vms" --listen "$HOST" --base-port "$base" --sim-addr "$HOST:0" \
			--socket "$dir/api.sock" --metrics-address - --redfish-address "$rf" --console-address - \
			</dev/null >"$dir/out" 2>"$dir/err" &
	fi
	PID[$key]=$!
	await_line "$dir/out" "$ready" "${PID[$key]}" "$deadline" || return 1
	sleep 0.2 # a bridge that could start no BMC exits right after the banner
	kill -0 "${PID[$key]}" 2>/dev/null
}

# why a bridge did not start, from its logs
bridge_why() { # dir
	local e
	e=$(grep -m1 'level=ERROR' "$1/err" 2>/dev/null | sed -n 's/.*msg="\([^"]*\)".* err="\([^"]*\)".*/\1: \2/p' || true)
	if [[ -n $e ]]; then
		printf '%s; %s' "$(last_line "$1/err")" "${e//|/\/}"
	else
		last_line "$1/err"
	fi
}

start_bridge() {
	local dir=$WORK/bridge/r$ROUND n
	NEP[bridge]=$VMS
	if ! launch_bridge bridge "$dir" "$VMS" 0 - 120; then
		fail_start bridge "did not start: $(bridge_why "$dir")"
		return 1
	fi
	n=$(grep -cE "udp://127\.0\.0\.1:[0-9]+" "$dir/out" || true)
	if ((${n:-0} < VMS)); then
		fail_start bridge "$n of $VMS BMCs in the banner: $(bridge_why "$dir")"
		return 1
	fi
	PORT[bridge]=$(grep -oE "udp://127\.0\.0\.1:[0-9]+" "$dir/out" | sed -n '1s/.*://p')
}

start_ipmi_sim() {
	local dir=$WORK/ipmi_sim/r$ROUND
	mkdir -p "$dir/state"
	NEP[ipmi_sim]=1
	PORT[ipmi_sim]=$(free_udp_port)
	sed "s/@PORT@/${PORT[ipmi_sim]}/g" "$BENCH_DIR/ipmi_sim/lan.conf.in" >"$dir/lan.conf"
	ipmi_sim -c "$dir/lan.conf" -f "$BENCH_DIR/ipmi_sim/bmc.emu" -s "$dir/state" -n \
		</dev/null >"$dir/out" 2>"$dir/err" &
	PID[ipmi_sim]=$!
}

start_goipmi() {
	local dir=$WORK/goipmi/r$ROUND
	mkdir -p "$dir"
	NEP[goipmi]=1
	PORT[goipmi]=$(free_udp_port)
	# env -i: only these settings, whatever GOIPMI_SERVER_* the caller has
	env -i GOIPMI_SERVER_PORT="${PORT[goipmi]}" GOIPMI_SERVER_USER="$IPMI_USER" GOIPMI_SERVER_PASS="$IPMI_PASS" \
		"$GOIPMI" </dev/null >"$dir/out" 2>"$dir/err" &
	PID[goipmi]=$!
}

start_pyghmi() {
	local dir=$WORK/pyghmi/r$ROUND
	mkdir -p "$dir"
	NEP[pyghmi]=1
	"$PYTHON" "$BENCH_DIR/pyghmi_bmc.py" --address "$HOST" --port 0 --user "$IPMI_USER" --password "$IPMI_PASS" \
		</dev/null >"$dir/out" 2>"$dir/err" &
	PID[pyghmi]=$!
	await_line "$dir/out" '^listening ' "${PID[pyghmi]}" $(($(now_ns) + 10000000000)) || true
	PORT[pyghmi]=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$dir/out" 2>/dev/null | sed -n 1p)
	if [[ -z ${PORT[pyghmi]} ]]; then
		fail_start pyghmi "did not start: $(last_line "$dir/err")"
		return 1
	fi
}

# ---------------------------------------------------------------- workloads

put() { RES[$1.$2.$3.$ROUND]=$4; } # name workload field value

# exec streams: NSTREAMS concurrent `ipmitool [args] exec FILE`.
# Sets cpu (µs/request), wall (ms), rps, okn, tot; or ERR.
streams() { # name workload nstreams ipmitool-args...
	local name=$1 key=$2 n=$3
	shift 3
	local dir=$WORK/$name/r$ROUND port=${PORT[$name]} s p rc t0 t1 c0 c1 okreq tmo=0 fail=0 reason="" total wall_ms
	local pids=()
	total=$((n * LINES))
	local stagger
	stagger=$(calc 'printf "%.3f", a / 1000' "$STREAM_STAGGER_MS")
	log "${LABEL[$name]}: $key: $n x ipmitool ${*:+$* }exec ($LINES x power status)"
	c0=$(cpu_read "${PID[$name]}")
	t0=$(now_ns)
	for ((s = 1; s <= n; s++)); do
		if ((s > 1 && STREAM_STAGGER_MS > 0)); then sleep "$stagger"; fi
		timeout -k 2 "$STREAM_TIMEOUT" ipmitool -I lanplus -H "$HOST" -p "$port" -U "$IPMI_USER" -P "$IPMI_PASS" \
			"$@" exec "$WORK/commands" >"$dir/$key.$s.out" 2>"$dir/$key.$s.err" &
		pids+=("$!")
		CLIENT_PIDS+=("$!")
	done
	s=0
	for p in "${pids[@]}"; do
		s=$((s + 1))
		rc=0
		wait "$p" || rc=$?
		if ((rc == 124 || rc == 137)); then
			tmo=$((tmo + 1))
		elif ((rc != 0)); then
			fail=$((fail + 1))
			reason=$(first_line "$dir/$key.$s.err")
			[[ -n $reason ]] || reason="exit $rc"
		fi
	done
	t1=$(now_ns)
	c1=$(cpu_read "${PID[$name]}")
	cpu_account "$name" "$c0" "$c1"
	CLIENT_PIDS=()
	for ((s = 1; s <= n; s++)); do
		if grep -q 'Unable to Get Channel Cipher Suites' "$dir/$key.$s.err"; then
			PROBE[$name.$key]=$((${PROBE[$name.$key]:-0} + 1))
		fi
		if grep -q 'no response from RAKP' "$dir/$key.$s.err"; then
			RAKP[$name.$key]=$((${RAKP[$name.$key]:-0} + 1))
		fi
	done
	okreq=$(cat "$dir/$key".*.out | grep -c '^Chassis Power is' || true)
	wall_ms=$(((t1 - t0) / 1000000))
	((wall_ms > 0)) || wall_ms=1
	put "$name" "$key" okn "$okreq"
	put "$name" "$key" tot "$total"
	if ((tmo > 0)); then
		ERR[$name.$key.$ROUND]="$tmo of $n streams timed out (${STREAM_TIMEOUT}s)"
	elif ((fail > 0)); then
		ERR[$name.$key.$ROUND]="$fail of $n streams failed: $reason"
	elif ((okreq < total)); then
		ERR[$name.$key.$ROUND]="$okreq of $total answered: $(first_line "$dir/$key.1.err")"
	fi
	if ((okreq == 0)); then
		[[ -n ${ERR[$name.$key.$ROUND]:-} ]] || ERR[$name.$key.$ROUND]="no answer"
		return 0
	fi
	put "$name" "$key" wall "$wall_ms"
	put "$name" "$key" rps "$(calc 'printf "%.1f", a * 1000 / b' "$okreq" "$wall_ms")"
	put "$name" "$key" cpu "$(calc 'printf "%.2f", a / 1000 / b' "$CPU_NS" "$okreq")"
	log "${LABEL[$name]}: $key: $okreq/$total answered in $wall_ms ms, server CPU $((CPU_NS / 1000000)) ms"
}

# setup: RUNS whole `ipmitool -C 3 ... power status` processes, one after
# the other, at most SETUP_RATE a second.
# Sets cpu (ms/process), p50, p95 (ms), okn, tot; or ERR.
setup() { # name
	local name=$1 key=setup
	local dir=$WORK/$name/r$ROUND port=${PORT[$name]} times ok=0 fail=0 tmo=0 done=0 reason="" t0 t1 rc i
	local c0 c1 start=$SECONDS first gap=$((1000000000 / SETUP_RATE)) wait_ns
	times=$dir/$key.times
	: >"$times"
	log "${LABEL[$name]}: $key: $RUNS x ipmitool -C 3 power status, at most $SETUP_RATE/s"
	c0=$(cpu_read "${PID[$name]}")
	first=$(now_ns)
	for ((i = 0; i < RUNS; i++)); do
		if ((SECONDS - start >= BUDGET)); then break; fi
		wait_ns=$((first + i * gap - $(now_ns)))
		if ((wait_ns > 0)); then sleep "$(calc 'printf "%.3f", a / 1e9' "$wait_ns")"; fi
		rc=0
		t0=$(now_ns)
		ipmi "$port" -C 3 power status >"$dir/$key.out" 2>"$dir/$key.err" || rc=$?
		t1=$(now_ns)
		done=$((done + 1))
		if grep -q 'no response from RAKP' "$dir/$key.err"; then
			RAKP[$name.$key]=$((${RAKP[$name.$key]:-0} + 1))
		fi
		if ((rc == 0)) && grep -q '^Chassis Power is' "$dir/$key.out"; then
			ok=$((ok + 1))
			echo $(((t1 - t0) / 1000)) >>"$times"
		elif ((rc == 124 || rc == 137)); then
			tmo=$((tmo + 1))
		else
			fail=$((fail + 1))
			reason=$(first_line "$dir/$key.err")
			[[ -n $reason ]] || reason="exit $rc"
		fi
	done
	c1=$(cpu_read "${PID[$name]}")
	cpu_account "$name" "$c0" "$c1"
	put "$name" "$key" wallt "$((($(now_ns) - first) / 1000000))"
	put "$name" "$key" okn "$ok"
	put "$name" "$key" tot "$RUNS"
	if ((tmo > 0)); then
		ERR[$name.$key.$ROUND]="$tmo of $RUNS timed out (${CALL_TIMEOUT}s)"
	elif ((fail > 0)); then
		ERR[$name.$key.$ROUND]="$fail of $RUNS failed: $reason"
	elif ((done < RUNS)); then
		ERR[$name.$key.$ROUND]="$((RUNS - done)) of $RUNS skipped (BUDGET ${BUDGET}s)"
	fi
	if ((ok == 0)); then
		[[ -n ${ERR[$name.$key.$ROUND]:-} ]] || ERR[$name.$key.$ROUND]="no run"
		return 0
	fi
	local p50 p95
	read -r p50 p95 < <(sort -n "$times" | awk '{v[NR] = $1}
		END {
			n = NR
			i50 = int(n * 0.50); if (i50 < n * 0.50) i50++; if (i50 < 1) i50 = 1
			i95 = int(n * 0.95); if (i95 < n * 0.95) i95++; if (i95 < 1) i95 = 1
			printf "%.3f %.3f\n", v[i50] / 1000, v[i95] / 1000
		}')
	put "$name" "$key" p50 "$p50"
	put "$name" "$key" p95 "$p95"
	put "$name" "$key" cpu "$(calc 'printf "%.3f", a / 1000000 / b' "$CPU_NS" "$ok")"
	log "${LABEL[$name]}: $key: $ok/$RUNS, p50 $p50 ms, server CPU $((CPU_NS / 1000000)) ms"
}

measure_rss() { # name field
	local kb
	kb=$(rss_kb "${PID[$1]}")
	put "$1" mem "$2" "$kb"
	put "$1" mem "$2per" "$(calc 'printf "%.1f", a / b' "$kb" "${NEP[$1]}")"
}

run_endpoint() { # name
	local name=$1 w
	if [[ -n ${PREP[$name]:-} ]]; then
		ERR[$name.start.$ROUND]=${PREP[$name]}
		return 0
	fi
	log "${LABEL[$name]}: round $ROUND: start"
	"start_$name" && answering "$name" || return 0
	log "${LABEL[$name]}: $HOST:${PORT[$name]}"
	IDLE_CPU=0
	IDLE_NS=0
	sleep 1
	measure_rss "$name" idle
	for w in "${WORKLOADS[@]}"; do
		pause_idle "$name"
		case $w in
		stream1) streams "$name" stream1 1 ;;
		stream8) streams "$name" stream8 "$STREAMS" ;;
		stream8c3) streams "$name" stream8c3 "$STREAMS" -C 3 ;;
		setup) setup "$name" ;;
		esac
	done
	put "$name" idle cpu "$(calc 'printf "%.2f", a / 1e6 / (b / 1e9)' "$IDLE_CPU" "$IDLE_NS")"
	if kill -0 "${PID[$name]}" 2>/dev/null; then
		measure_rss "$name" after
	else
		ERR[$name.start.$ROUND]="exited during the workloads: $(last_line "$WORK/$name/r$ROUND/err")"
	fi
	stop_endpoint "$name"
}

# ---------------------------------------------------------------- Redfish

BRIDGE_REV=""
RF_N=""       # VMs of the large Redfish bridge that started
RF_TRIED=()   # "N: reason" for counts that did not
declare -A RFPORT=() RFSYS=() RFVMS=()

# starts a bridge with Redfish for VMS VMs as endpoint key; sets
# RES[key.start.{ms,rss,rssper}.0], RFPORT, RFSYS; 1 with ERR when it fails
start_rf_bridge() { # key vms
	local key=$1 vms=$2 dir=$WORK/$1-$2 base=0 t0 t1 n i
	mkdir -p "$dir"
	if ((vms > RF_FEW)); then
		if [[ -n $REDFISH_BASE_PORT ]]; then
			base=$REDFISH_BASE_PORT
		elif ! base=$(free_udp_range "$vms"); then
			ERR[$key.start.0]="no free range of $vms UDP ports"
			return 1
		fi
	fi
	if ((base > 0)); then
		log "redfish: bridge with $vms VMs (UDP ports $base..$((base + vms - 1)), Redfish on a free port)"
	else
		log "redfish: bridge with $vms VMs (free UDP ports, Redfish on a free port)"
	fi
	t0=$(now_ns)
	if ! launch_bridge "$key" "$dir" "$vms" "$base" "$HOST:0" "$REDFISH_START_TIMEOUT"; then
		if kill -0 "${PID[$key]}" 2>/dev/null; then
			ERR[$key.start.0]="not serving after ${REDFISH_START_TIMEOUT}s (REDFISH_START_TIMEOUT): $(bridge_why "$dir")"
		else
			ERR[$key.start.0]="exited after $((($(now_ns) - t0) / 1000000000)) s: $(bridge_why "$dir")"
		fi
		stop_endpoint "$key"
		return 1
	fi
	n=$(grep -cE "udp://127\.0\.0\.1:[0-9]+" "$dir/out" || true)
	RFPORT[$key]=$(sed -n 's|^ *redfish: *https://[^ ]*:\([0-9][0-9]*\)/redfish/v1.*|\1|p' "$dir/out" | sed -n 1p)
	RFSYS[$key]=$(awk '$1 == "VM" && $2 == "BMC" {getline; print $1; exit}' "$dir/out")
	if [[ $VCENTER == process ]]; then
		# With a vCenter the banner comes after at most 10 s, BMCs still
		# waiting for the first synchronisation: wait for all to run.
		until n=$("$BRIDGE" bmc list --socket "$dir/api.sock" 2>/dev/null | awk '$3 == "running"' | wc -l) && ((n >= vms)); do
			if ! kill -0 "${PID[$key]}" 2>/dev/null || (($(now_ns) - t0 > REDFISH_START_TIMEOUT * 1000000000)); then break; fi
			sleep 1
		done
	fi
	if ((${n:-0} == 0)); then
		sleep 1 # it exits: "no BMC could be started"
		ERR[$key.start.0]="no BMC serving after $((($(now_ns) - t0) / 1000000000)) s: $(bridge_why "$dir")"
		stop_endpoint "$key"
		return 1
	fi
	if [[ -z ${RFPORT[$key]} || -z ${RFSYS[$key]} ]]; then
		ERR[$key.start.0]="no Redfish address or VM in the banner: $(bridge_why "$dir")"
		stop_endpoint "$key"
		return 1
	fi
	for ((i = 0; i < 100; i++)); do
		if ! kill -0 "${PID[$key]}" 2>/dev/null; then
			i=100
			break
		fi
		if "$PYTHON" "$BENCH_DIR/redfish_get.py" --port "${RFPORT[$key]}" --path "/redfish/v1/Systems/${RFSYS[$key]}" \
			--user "$IPMI_USER" --password "$IPMI_PASS" --count 1 >"$dir/probe" 2>&1; then
			break
		fi
		sleep 0.2
	done
	t1=$(now_ns)
	if ((i == 100)); then
		ERR[$key.start.0]="Redfish GET /redfish/v1/Systems/${RFSYS[$key]} failed: $(last_line "$dir/probe"); $(bridge_why "$dir")"
		stop_endpoint "$key"
		return 1
	fi
	RFVMS[$key]=$vms
	RES[$key.start.ms.0]=$(((t1 - t0) / 1000000))
	RES[$key.start.bmcs.0]=$n
	sleep "$PAUSE"
	RES[$key.start.rss.0]=$(rss_kb "${PID[$key]}")
	log "redfish: $vms VMs: $n BMCs serving, Redfish answering after $(calc 'printf "%.1f", a / 1000' "${RES[$key.start.ms.0]}") s, VmRSS ${RES[$key.start.rss.0]} kB"
	return 0
}

# REDFISH_N GETs of one system over one keep-alive connection.
# Sets RES[key.rf.{cpu,rps,okn,tot,idle}.ROUND] or ERR.
redfish_get() { # key
	local key=$1 dir=$WORK/$1-${RFVMS[$1]} c0 c1 rc=0 line okn wall
	IDLE_CPU=0
	IDLE_NS=0
	pause_idle "$key"
	put "$key" rf idle "$(calc 'printf "%.2f", a / 1e6 / (b / 1e9)' "$IDLE_CPU" "$IDLE_NS")"
	log "redfish: ${RFVMS[$key]} VMs: $REDFISH_N x GET /redfish/v1/Systems/${RFSYS[$key]}"
	c0=$(cpu_read "${PID[$key]}")
	"$PYTHON" "$BENCH_DIR/redfish_get.py" --port "${RFPORT[$key]}" --path "/redfish/v1/Systems/${RFSYS[$key]}" \
		--user "$IPMI_USER" --password "$IPMI_PASS" --count "$REDFISH_N" >"$dir/get.$ROUND.out" 2>"$dir/get.$ROUND.err" &
	CLIENT_PIDS=("$!")
	wait "$!" || rc=$?
	CLIENT_PIDS=()
	c1=$(cpu_read "${PID[$key]}")
	cpu_account "$key" "$c0" "$c1"
	line=$(grep '^ok=' "$dir/get.$ROUND.out" || true)
	okn=$(sed -n 's/^ok=\([0-9]*\) .*/\1/p' <<<"$line")
	wall=$(sed -n 's/.* wall_ms=\([0-9]*\) .*/\1/p' <<<"$line")
	put "$key" rf okn "${okn:-0}"
	put "$key" rf tot "$REDFISH_N"
	if ((rc != 0)); then
		ERR[$key.rf.$ROUND]="${line:-$(last_line "$dir/get.$ROUND.err")}"
	fi
	if [[ -z $okn || $okn == 0 || -z $wall ]]; then
		[[ -n ${ERR[$key.rf.$ROUND]:-} ]] || ERR[$key.rf.$ROUND]="no answer"
		return 0
	fi
	((wall > 0)) || wall=1
	put "$key" rf rps "$(calc 'printf "%.1f", a * 1000 / b' "$okn" "$wall")"
	put "$key" rf cpu "$(calc 'printf "%.2f", a / 1000 / b' "$CPU_NS" "$okn")"
	log "redfish: ${RFVMS[$key]} VMs: $okn/$REDFISH_N in $wall ms, server CPU $((CPU_NS / 1000000)) ms"
}

redfish_phase() {
	local n r k first=1
	if [[ -n ${PREP[bridge]:-} ]]; then
		ERR[rffew.start.0]=${PREP[bridge]}
		ERR[rfbig.start.0]=${PREP[bridge]}
		return 0
	fi
	start_rf_bridge rffew "$RF_FEW" || log "redfish: $RF_FEW VMs: ${ERR[rffew.start.0]}"
	for n in "$REDFISH_VMS" $REDFISH_FALLBACK; do
		# REDFISH_VMS first, then (after a failure) the smaller fallbacks
		if [[ -n $RF_N ]] || ((!first && n >= REDFISH_VMS)); then continue; fi
		first=0
		if start_rf_bridge rfbig "$n"; then
			RF_N=$n
		else
			log "redfish: $n VMs: ${ERR[rfbig.start.0]}"
			RF_TRIED+=("$n: ${ERR[rfbig.start.0]}")
			unset "ERR[rfbig.start.0]"
		fi
	done
	if [[ -z $RF_N ]]; then
		ERR[rfbig.start.0]="no count started (${RF_TRIED[*]:-})"
	fi
	for ((r = 1; r <= ROUNDS; r++)); do
		ROUND=$r
		for k in rffew rfbig; do
			if [[ -n ${PID[$k]:-} ]]; then redfish_get "$k"; fi
		done
	done
	for k in rffew rfbig; do
		if [[ -n ${PID[$k]:-} ]]; then
			RES[$k.end.rss.0]=$(rss_kb "${PID[$k]}")
			stop_endpoint "$k"
		fi
	done
}

# ---------------------------------------------------------------- main

prepare_all() {
	mkdir -p "$WORK/build"
	if ! command -v ipmitool >/dev/null; then
		apt_install ipmitool || true
	fi
	command -v ipmitool >/dev/null || die "ipmitool is needed (apt-get install ipmitool)"
	prepare_bridge
	prepare_goipmi
	prepare_ipmi_sim
	prepare_pyghmi
	local n
	for n in "${ENDPOINTS[@]}"; do
		if [[ -n ${PREP[$n]:-} ]]; then log "${LABEL[$n]}: cannot run: ${PREP[$n]}"; fi
	done
}

T_START=$(now_ns)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
prepare_all
for ((i = 0; i < LINES; i++)); do echo 'power status'; done >"$WORK/commands"

for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
	log "round $ROUND of $ROUNDS"
	for name in "${ENDPOINTS[@]}"; do
		run_endpoint "$name"
	done
done
redfish_phase
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
T_END=$(now_ns)
log "done in $(((T_END - T_START) / 1000000000)) s"

# ---------------------------------------------------------------- report

# CPU net of idle: each round's CPU figure less the idle rate (of the same
# endpoint and round) times the workload's wall time, per request/process
compute_net() {
	local n w r cpu idle okn wall
	for n in "${ENDPOINTS[@]}"; do
		for w in "${WORKLOADS[@]}"; do
			for ((r = 1; r <= ROUNDS; r++)); do
				cpu=${RES[$n.$w.cpu.$r]:-}
				idle=${RES[$n.idle.cpu.$r]:-}
				okn=${RES[$n.$w.okn.$r]:-0}
				if [[ $w == setup ]]; then wall=${RES[$n.$w.wallt.$r]:-}; else wall=${RES[$n.$w.wall.$r]:-}; fi
				if [[ -z $cpu || -z $idle || -z $wall ]] || ((okn == 0)); then continue; fi
				if [[ $w == setup ]]; then # ms per process
					RES[$n.$w.net.$r]=$(calc 'printf "%.3f", a - b * c / 1000' "$cpu" "$idle" "$(calc 'print a / b' "$wall" "$okn")")
				else # µs per request
					RES[$n.$w.net.$r]=$(calc 'printf "%.2f", a - b * c' "$cpu" "$idle" "$(calc 'print a / b' "$wall" "$okn")")
				fi
			done
		done
	done
}

# the values of RES[prefix.ROUND] over the rounds, one a line
vals() { # prefix
	local r
	for ((r = 1; r <= ROUNDS; r++)); do
		if [[ -n ${RES[$1.$r]:-} ]]; then echo "${RES[$1.$r]}"; fi
	done
}

median() { # prefix -> median over the rounds, empty when none
	vals "$1" | sort -g | awk '{v[NR] = $1} END {
		if (NR == 0) exit
		if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

nvals() { vals "$1" | wc -l; }

fmt_val() { # kind value
	case $1 in
	us) calc 'if (a >= 100) printf "%.0f µs", a; else printf "%.1f µs", a' "$2" ;;
	ms) calc 'if (a >= 1000) printf "%.2f s", a / 1000; else if (a >= 10) printf "%.1f ms", a; else printf "%.2f ms", a' "$2" ;;
	rps) calc 'printf "%.0f req/s", a' "$2" ;;
	kb) calc 'if (a >= 10240) printf "%.1f MiB", a / 1024; else printf "%.0f KiB", a' "$2" ;;
	idle) calc 'printf "%.1f ms/s", a' "$2" ;;
	*) printf '%s' "$2" ;;
	esac
}

fmt_ratio() { # value
	calc 'if (a >= 10) printf "%.1f×", a; else printf "%.2f×", a' "$1"
}

ratio() { # numerator denominator -> ratio, empty when unusable
	if [[ -n $1 && -n $2 ]] && calc 'exit !(b > 0)' "$1" "$2"; then
		calc 'printf "%.4f", a / b' "$1" "$2"
	fi
}

# first recorded failure of an endpoint (its start, or the workload)
why() { # name workload
	local r
	if [[ -n ${ERR[$1.start.0]:-} ]]; then
		printf '%s' "${ERR[$1.start.0]}"
		return
	fi
	for ((r = 1; r <= ROUNDS; r++)); do
		if [[ -n ${ERR[$1.start.$r]:-} ]]; then
			printf '%s' "${ERR[$1.start.$r]}"
			return
		fi
		if [[ -n ${ERR[$1.$2.$r]:-} ]]; then
			printf '%s' "${ERR[$1.$2.$r]}"
			return
		fi
	done
}

short() { # text -> at most 70 characters
	local t=$1
	((${#t} <= 70)) || t="${t:0:67}..."
	printf '%s' "$t"
}

# value cell: median over the rounds, "(k of n rounds)" when some lacked
# one, or the failure
vcell() { # name workload field kind
	local m n w
	m=$(median "$1.$2.$3")
	if [[ -z $m ]]; then
		w=$(why "$1" "$2")
		if [[ $w == *timed\ out* && $w != *failed* ]]; then
			printf 'timeout'
		else
			printf 'failed: %s' "$(short "${w:-not run}")"
		fi
		return
	fi
	fmt_val "$4" "$m"
	n=$(nvals "$1.$2.$3")
	if ((n < ROUNDS)); then printf ' (%d of %d rounds)' "$n" "$ROUNDS"; fi
}

# requests answered, summed over the rounds
acell() { # name workload
	local okn=0 tot=0 r w
	for ((r = 1; r <= ROUNDS; r++)); do
		okn=$((okn + ${RES[$1.$2.okn.$r]:-0}))
		tot=$((tot + ${RES[$1.$2.tot.$r]:-0}))
	done
	if ((tot == 0)); then
		w=$(why "$1" "$2")
		printf 'failed: %s' "$(short "${w:-not run}")"
	else
		printf '%d/%d' "$okn" "$tot"
	fi
}

row() { # label workload field kind [cpu]: one endpoint row with ratios
	local label=$1 wl=$2 field=$3 kind=$4 cpu=${5:-} line n m base r per="" rr
	base=$(median "ipmi_sim.$wl.$field")
	line="| $label"
	for n in "${ENDPOINTS[@]}"; do
		line+=" | $(vcell "$n" "$wl" "$field" "$kind")"
		m=$(median "$n.$wl.$field")
		if [[ $n == goipmi || $n == pyghmi ]]; then
			r=$(ratio "$m" "$base")
			if [[ -n $r ]]; then line+=" ($(fmt_ratio "$r"))"; fi
		fi
		if [[ -n $m ]]; then
			for ((rr = 1; rr <= ROUNDS; rr++)); do
				if [[ -n ${ERR[$n.$wl.$rr]:-} ]]; then
					line+=" (with errors, see notes)"
					break
				fi
			done
		fi
	done
	if [[ -n $cpu ]]; then
		for ((rr = 1; rr <= ROUNDS; rr++)); do
			r=$(ratio "${RES[bridge.$wl.$field.$rr]:-}" "${RES[ipmi_sim.$wl.$field.$rr]:-}")
			per+="${per:+, }${r:+$(fmt_ratio "$r")}"
			[[ -n $r ]] || per+="–"
		done
	fi
	r=$(ratio "$(median "bridge.$wl.$field")" "$base")
	line+=" | $per | ${r:+$(fmt_ratio "$r")}"
	printf '%s |\n' "$line"
}

arow() { # label workload
	local line="| $1" n
	for n in "${ENDPOINTS[@]}"; do
		line+=" | $(acell "$n" "$2")"
	done
	printf '%s |  |  |\n' "$line"
}

# a bridge-only row (Redfish): the value in the bridge column, the values
# per round in the per-round column
brow() { # label key workload field kind
	local v per="" rr
	v=$(vcell "$2" "$3" "$4" "$5")
	if ((ROUNDS > 1)) && [[ -n $(median "$2.$3.$4") ]]; then
		for ((rr = 1; rr <= ROUNDS; rr++)); do
			if [[ -n ${RES[$2.$3.$4.$rr]:-} ]]; then
				per+="${per:+, }$(fmt_val "$5" "${RES[$2.$3.$4.$rr]}")"
			else
				per+="${per:+, }–"
			fi
		done
	fi
	printf '| %s | %s | – | – | – | %s | |\n' "$1" "$v" "$per"
}

# a bridge-only row of a figure measured once (start time, RSS)
orow() { # label text
	printf '| %s | %s | – | – | – | | |\n' "$1" "$2"
}

report() {
	local ipmitool_version openipmi_version pyghmi_version goipmi_version cpu n w k
	ipmitool_version=$(ipmitool -V 2>/dev/null | awk '{print $NF}' || true)
	openipmi_version=$(dpkg-query -W -f '${Version}' openipmi 2>/dev/null || echo '?')
	pyghmi_version=$(dpkg-query -W -f '${Version}' python3-pyghmi 2>/dev/null || echo '?')
	goipmi_version=$(awk '$1 == "github.com/bougou/go-ipmi" {print $2; exit}' "$ROOT/go.mod" 2>/dev/null || true)
	cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)

	echo "### IPMI endpoint benchmark"
	echo
	echo "$(date -u +%Y-%m-%d), $(nproc) CPUs (${cpu:-unknown CPU}), Linux $(uname -r); ipmitool ${ipmitool_version:-?}," \
		"everything on 127.0.0.1; $ROUNDS interleaved round(s), medians shown; the whole run took" \
		"$(((T_END - T_START) / 60000000000)) min $((((T_END - T_START) / 1000000000) % 60)) s, load average before / after $LOAD_START / $LOAD_END." \
		"bridge: ipmi-vmware-bridge ${BRIDGE_REV:-?} (when built), $(bridge_mode)," \
		"one process serving $VMS BMCs (workloads use the first); ipmi_sim: OpenIPMI $openipmi_version, one BMC;" \
		"go-ipmi: \`goipmi-server\` from github.com/bougou/go-ipmi ${goipmi_version:-?}, one BMC;" \
		"pyghmi: \`pyghmi.ipmi.bmc.Bmc\` from python3-pyghmi $pyghmi_version (virtualbmc's engine), one BMC, an in-memory machine." \
		"Client: \`ipmitool -I lanplus -H 127.0.0.1 -p PORT -U admin -P password\`, \`power status\` (Get Chassis Status)."
	echo
	echo "| figure | bridge ($VMS BMCs in 1 process) | ipmi_sim | go-ipmi | pyghmi | bridge/ipmi_sim per round | bridge/ipmi_sim |"
	echo "|---|---|---|---|---|---|---|"
	row "stream1: one \`ipmitool exec\` of $LINES \`power status\`, no \`-C\`: **server CPU µs/request**" stream1 cpu us cpu
	row "stream1: server CPU µs/request net of idle (less the idle row's rate × wall time)" stream1 net us cpu
	row "stream1: wall time" stream1 wall ms
	row "stream1: requests/s" stream1 rps rps
	arow "stream1: requests answered (all rounds)" stream1
	row "stream8: $STREAMS such streams concurrently (started ${STREAM_STAGGER_MS} ms apart), no \`-C\`: **server CPU µs/request**" stream8 cpu us cpu
	row "stream8: net of idle" stream8 net us cpu
	row "stream8: throughput" stream8 rps rps
	row "stream8: wall time" stream8 wall ms
	arow "stream8: requests answered (all rounds)" stream8
	row "stream8c3: the same with \`-C 3\`: **server CPU µs/request**" stream8c3 cpu us cpu
	row "stream8c3: net of idle" stream8c3 net us cpu
	row "stream8c3: throughput" stream8c3 rps rps
	row "stream8c3: wall time" stream8c3 wall ms
	arow "stream8c3: requests answered (all rounds)" stream8c3
	row "setup: $RUNS \`ipmitool -C 3 ... power status\` processes: **server CPU ms/process**" setup cpu ms cpu
	row "setup: net of idle" setup net ms cpu
	row "setup: wall time per process, p50" setup p50 ms
	row "setup: wall time per process, p95" setup p95 ms
	arow "setup: processes that printed the power state (all rounds)" setup
	row "idle: server CPU while idle between workloads" idle cpu idle cpu
	row "memory per BMC (VmRSS / BMCs), idle after start" mem idleper kb
	row "memory per BMC after the workloads" mem afterper kb
	row "VmRSS of the process after the workloads" mem after kb
	local few=${RFVMS[rffew]:-$RF_FEW} big=${RF_N:-$REDFISH_VMS}
	brow "Redfish, bridge with $few systems: $REDFISH_N \`GET /redfish/v1/Systems/ID\` on one keep-alive TLS connection: **server CPU µs/request**" rffew rf cpu us
	brow "Redfish, $few systems: requests/s (one client)" rffew rf rps rps
	brow "Redfish, $few systems: server CPU while idle" rffew rf idle idle
	brow "Redfish, bridge with $big systems: **server CPU µs/request**" rfbig rf cpu us
	brow "Redfish, $big systems: requests/s (one client)" rfbig rf rps rps
	brow "Redfish, $big systems: server CPU while idle" rfbig rf idle idle
	for k in rffew rfbig; do
		n=${RFVMS[$k]:-}
		if [[ -z $n ]]; then
			n=$REDFISH_VMS
			if [[ $k == rffew ]]; then n=$few; fi
			orow "bridge with $n VMs: start" "failed: $(short "${ERR[$k.start.0]:-not run}")"
			continue
		fi
		orow "bridge with $n VMs: start to all BMCs serving and Redfish answering (the simulator creating the VMs included)" \
			"$(fmt_val ms "${RES[$k.start.ms.0]}") (${RES[$k.start.bmcs.0]} BMCs)"
		orow "bridge with $n VMs: VmRSS after start / per VM" \
			"$(fmt_val kb "${RES[$k.start.rss.0]}") / $(fmt_val kb "$(calc 'print a / b' "${RES[$k.start.rss.0]}" "$n")")"
		if [[ -n ${RES[$k.end.rss.0]:-} ]]; then
			orow "bridge with $n VMs: VmRSS after the Redfish GETs" "$(fmt_val kb "${RES[$k.end.rss.0]}")"
		fi
	done
	echo
	if [[ $CPU_CLOCK == schedstat ]]; then
		echo "Server CPU: the CPU time of the server process's threads (and of its child processes), read before and after each workload"
		echo "(/proc/PID/task/TID/schedstat, ns; /proc/PID/stat utime+stime in $((1000 / CLK_TCK)) ms ticks agree, see the notes),"
	else
		echo "Server CPU: utime+stime of the server process and its children (/proc/PID/stat), read before and after each workload,"
		echo "in ticks of $((1000 / CLK_TCK)) ms,"
	fi
	echo "divided by the requests answered (or processes run); it includes whatever the server does in the background meanwhile"
	echo "(the idle row). Peers' cells: median, and in parentheses its ratio to ipmi_sim's."
	echo "bridge/ipmi_sim: the bridge's figure divided by ipmi_sim's (below 1: less CPU, time or memory; above 1: more requests/s)."
	echo "Each workload starts after ${PAUSE} s idle; \`setup\` starts at most $SETUP_RATE processes a second (the bridge allows 100"
	echo "session-setup packets a second per source and BMC, 3 per login), the streams start ${STREAM_STAGGER_MS} ms apart (the bridge keeps"
	echo "at most 8 session setups in progress per source and BMC). p50/p95 are nearest-rank over the successful runs."
	if [[ $VCENTER == embedded ]]; then
		echo "The bridge's RSS and CPU include the embedded vCenter simulator (govmomi's vcsim) holding the VMs; against a real"
		echo "vCenter that part is not in the process."
	fi
	echo "ipmi_sim and pyghmi offer only cipher suite 3; without \`-C\` the bridge and go-ipmi use 17."

	for n in "${ENDPOINTS[@]}"; do
		for w in "${WORKLOADS[@]}"; do
			if ((${PROBE[$n.$w]:-0} > 0)); then
				NOTES+=("${LABEL[$n]}, $w: ${PROBE[$n.$w]} stream(s) (all rounds) printed \"Unable to Get Channel Cipher Suites\": the BMC did not answer the sessionless Get Channel Cipher Suites (NetFn App, 54h); ipmitool retried until it gave up (about 10 s) and fell back to suite 3. That wait is in the wall times, not in the CPU figures.")
			fi
			if ((${RAKP[$n.$w]:-0} > 0)); then
				local extra=""
				if [[ $n == bridge ]]; then
					extra=" The bridge keeps at most 8 session setups in progress per source address and BMC (perSourcePending in internal/ipmi/handshakes.go); a 9th evicts the oldest one not yet answered with RAKP 2, whose RAKP 1 then goes unanswered. It also drops session-setup packets beyond 100 a second per source and BMC, in bursts of up to 200 (guard.Default in internal/guard/guard.go; with \`--debug\` it logs \"session setup dropped ... rate limited\"),"
					if [[ $w == setup ]]; then
						extra+=" but \`setup\` sends at most $((3 * SETUP_RATE)) a second, one login at a time, so neither limit explains it."
					else
						extra+=" but this workload sends $((3 * STREAMS)) after ${PAUSE} s idle: the streams' setups overlapped (STREAM_STAGGER_MS=$STREAM_STAGGER_MS)."
					fi
				fi
				NOTES+=("${LABEL[$n]}, $w: in ${RAKP[$n.$w]} run(s)/stream(s) (all rounds) ipmitool printed \"no response from RAKP n message\", waited out its 1 s retry timeout and redid the handshake.$extra")
			fi
		done
		for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
			for w in start "${WORKLOADS[@]}"; do
				if [[ -n ${ERR[$n.$w.$ROUND]:-} ]]; then
					NOTES+=("${LABEL[$n]}, round $ROUND, ${w/#start/the endpoint itself}: ${ERR[$n.$w.$ROUND]}")
				fi
			done
		done
	done
	for n in "${ENDPOINTS[@]}"; do
		for k in "${!ERR[@]}"; do
			if [[ $k != "$n".stream* ]]; then continue; fi
			if [[ ${ERR[$k]} == *'insufficient resources for session'* ||
				($n == goipmi && ${ERR[$k]} == *'Unable to establish IPMI v2'*) ]]; then
				local cause=""
				if [[ $n == bridge ]]; then
					cause=" The bridge keeps at most 8 session setups in progress per source address and BMC (perSourcePending in internal/ipmi/handshakes.go) and refuses a 9th when none of the 8 can be evicted (all answered with RAKP 2): the streams' setups overlapped (STREAM_STAGGER_MS=$STREAM_STAGGER_MS)."
				fi
				if [[ $n == goipmi ]]; then
					cause=" goipmi-server allows 4 concurrent RMCP+ sessions (MaxSessions in go-ipmi's pkg/bmc/session.go, the minimum IPMI 2.0 requires; goipmi-server has no setting for it), so of $STREAMS concurrent streams the ones that open their session while 4 are open are refused (without -C ipmitool prints only \"Unable to establish IPMI v2 / RMCP+ session\"; with -v, or with -C 3, it shows the refusal)."
				fi
				NOTES+=("${LABEL[$n]} refused sessions with \"insufficient resources for session\" (Open Session status 01h).$cause Its figures for those workloads are for the streams that got a session: CPU per answered request stays comparable, throughput and wall time do not.")
				break
			fi
		done
	done
	local xs=""
	for n in "${ENDPOINTS[@]}" rffew rfbig; do
		if [[ -n ${XTICKS[$n]:-} ]]; then
			xs+="${xs:+; }${LABEL[$n]:-$n} $(calc 'printf "%.0f", a / 1e6' "${XNS[$n]}") ms by schedstat, $((XTICKS[$n] * 1000 / CLK_TCK)) ms by stat"
		fi
	done
	if [[ $CPU_CLOCK == schedstat ]]; then
		NOTES+=("CPU clock: the per-thread schedstat run time (ns). Cross-check, server CPU over all measured windows (workloads and pauses): $xs.")
	else
		NOTES+=("CPU clock: /proc/PID/stat utime+stime+cutime+cstime in $((1000 / CLK_TCK)) ms ticks (CPU_CLOCK=stat, or no schedstat): a window of under a few hundred ms carries an error of up to one tick.")
	fi
	if ((${#RF_TRIED[@]} > 0)); then
		local t msg="Redfish: a bridge with REDFISH_VMS=$REDFISH_VMS VMs could not be started"
		for t in "${RF_TRIED[@]}"; do msg+="; ${t%%:*} VMs: ${t#*: }"; done
		if [[ -n $RF_N ]]; then
			msg+=". The largest count tried that started, $RF_N (from REDFISH_FALLBACK=\"$REDFISH_FALLBACK\"), is used instead."
		fi
		if grep -qs 'not synchronised with vCenter yet' "$WORK"/rfbig-*/err; then
			msg+=" In simulator mode \`serve\` waits at most 10 s (startWait in internal/daemon/daemon.go) for the first inventory synchronisation after connecting to the simulator; BMCs not synchronised by then are not started, and a simulator-mode bridge with no BMC running exits (\"no BMC could be started\")."
		fi
		NOTES+=("$msg")
	fi
	for k in rffew rfbig; do
		if [[ -n ${ERR[$k.start.0]:-} ]]; then NOTES+=("${LABEL[$k]}: ${ERR[$k.start.0]}"); fi
		if [[ -n ${RFVMS[$k]:-} ]] && ((${RES[$k.start.bmcs.0]:-0} < RFVMS[$k])); then
			NOTES+=("${LABEL[$k]}: only ${RES[$k.start.bmcs.0]:-0} of ${RFVMS[$k]} BMCs were serving when its banner was printed; the others' lines say why.")
		fi
		for ((ROUND = 1; ROUND <= ROUNDS; ROUND++)); do
			if [[ -n ${ERR[$k.rf.$ROUND]:-} ]]; then NOTES+=("${LABEL[$k]} (${RFVMS[$k]:-?} VMs), round $ROUND: ${ERR[$k.rf.$ROUND]}"); fi
		done
	done
	for n in "${NOTES[@]}"; do
		echo
		echo "- $n"
	done
}

compute_net
if [[ -n $OUT ]]; then
	report | tee "$OUT"
else
	report
fi
