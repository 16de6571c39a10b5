#!/usr/bin/env bash
# scripts/bench.sh: the bridge's IPMI endpoints against two other IPMI BMC
# emulators, in one run, on this machine, all on 127.0.0.1.
#
# Endpoints (started one after the other; each is stopped before the next):
#   bridge    this repository's ipmi-vmware-bridge, `serve` in simulator mode
#             with $VMS VMs, so one process serves $VMS BMCs (go build first;
#             BRIDGE=/path/to/binary skips the build)
#   ipmi_sim  OpenIPMI's BMC simulator (Debian package openipmi), one BMC,
#             configured by scripts/bench/ipmi_sim/{lan.conf.in,bmc.emu}
#   pyghmi    pyghmi.ipmi.bmc.Bmc (Debian python3-pyghmi, the engine of
#             virtualbmc), one BMC, scripts/bench/pyghmi_bmc.py run with
#             /usr/bin/python3
#
# Workloads, the same for each endpoint, user admin / password password:
#   1.  $RUNS times one whole `ipmitool -I lanplus ... power status` process
#       without -C: mean, p50 and p95 wall time per process (1b: with -C 3)
#   2.  $STREAMS concurrent `ipmitool -I lanplus ... exec FILE`, FILE holding
#       $LINES lines of `power status` (one session per stream): total wall
#       time and requests/s (2b: with -C 3)
#   3.  memory per endpoint: VmRSS (/proc/PID/status, child processes
#       included) divided by the number of BMCs the process serves, once idle
#       after start and once after the workloads
# It prints a Markdown table (ready for README.md) with the ratios
# "bridge is X× faster" / "bridge uses X× less memory" against each peer.
# A peer that cannot be started, or a workload that fails or times out
# against it, shows up in the table as "failed: ..." or "timeout"; the
# script carries on.
#
# Run:    ./scripts/bench.sh                  (as root it apt-get installs
#                                              openipmi / python3-pyghmi /
#                                              ipmitool when they are missing)
#         RUNS=10 LINES=100 ./scripts/bench.sh
# Env:    RUNS=30 LINES=200 STREAMS=8 VMS=50
#         CALL_TIMEOUT=30      seconds allowed to one ipmitool process (wl. 1)
#         STREAM_TIMEOUT=300   seconds allowed to one exec stream (wl. 2)
#         BUDGET=600           seconds for one workload on one endpoint; runs
#                              left when it is spent are skipped and counted
#         WITH_C3=1            also run 1b and 2b (-C 3); 0 skips them
#         PAUSE=3              idle seconds before each workload, so that
#                              a BMC's session-setup rate limit (the
#                              bridge's: 20 packets/s, bursts of 40) starts
#                              each workload rested, not drained by the last
#         AUTO_INSTALL=1       apt-get install missing tools when root
#         BRIDGE=              a prebuilt bridge binary (default: go build)
#         OUT=                 also write the table to this file
#         KEEP=0               1 keeps the temporary directory (logs)
# Output: progress on stderr, the table on stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=$ROOT/scripts/bench

RUNS=${RUNS:-30}
LINES=${LINES:-200}
STREAMS=${STREAMS:-8}
VMS=${VMS:-50}
CALL_TIMEOUT=${CALL_TIMEOUT:-30}
STREAM_TIMEOUT=${STREAM_TIMEOUT:-300}
BUDGET=${BUDGET:-600}
WITH_C3=${WITH_C3:-1}
PAUSE=${PAUSE:-3}
AUTO_INSTALL=${AUTO_INSTALL:-1}
PYTHON=${PYTHON:-/usr/bin/python3}
BRIDGE=${BRIDGE:-}
OUT=${OUT:-}
KEEP=${KEEP:-0}

HOST=127.0.0.1
IPMI_USER='admin'
IPMI_PASS='password'
ENDPOINTS=(bridge ipmi_sim pyghmi)

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

check_int() { # name value max
	if ! [[ $2 =~ ^[1-9][0-9]*$ ]] || (($2 > $3)); then
		die "$1 must be an integer in 1..$3 (got '$2')"
	fi
}
check_int RUNS "$RUNS" 10000
check_int LINES "$LINES" 100000
check_int STREAMS "$STREAMS" 64
check_int VMS "$VMS" 1000
check_int CALL_TIMEOUT "$CALL_TIMEOUT" 3600
check_int STREAM_TIMEOUT "$STREAM_TIMEOUT" 36000
check_int BUDGET "$BUDGET" 86400
[[ $PAUSE =~ ^[0-9]+$ ]] || die "PAUSE must be a number of seconds (got '$PAUSE')"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ipmi-bench.XXXXXX")
cd "$WORK" # nothing is written anywhere else
declare -A PID=() PORT=() STATUS=() NEP=() RES=()
CLIENT_PIDS=()
NOTES=()

cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	for p in "${CLIENT_PIDS[@]}" "${PID[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		local alive=0
		for p in "${CLIENT_PIDS[@]}" "${PID[@]}"; do
			if kill -0 "$p" 2>/dev/null; then alive=1; fi
		done
		((alive)) || break
		sleep 0.2
	done
	for p in "${CLIENT_PIDS[@]}" "${PID[@]}"; do
		kill -9 "$p" 2>/dev/null || true
	done
	wait 2>/dev/null || true
	if [[ $KEEP == 1 ]]; then
		log "logs kept in $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers

now_ns() { date +%s%N; }

wl_label() { # workload key -> the name used in the table
	case $1 in
	w1) echo 1 ;;
	w1c3) echo 1b ;;
	w2) echo 2 ;;
	w2c3) echo 2b ;;
	*) echo "$1" ;;
	esac
}

# last non-empty line of a file, made safe for a Markdown table cell
last_line() {
	local l
	l=$(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1 || true)
	l=${l//|/\/}
	printf '%s' "${l:0:90}"
}

free_udp_port() {
	"$PYTHON" -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' 2>/dev/null || shuf -i 20000-60999 -n 1
}

# PID and all its descendants
tree_pids() {
	local c
	echo "$1"
	for c in $(pgrep -P "$1" 2>/dev/null || true); do
		tree_pids "$c"
	done
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

# waits until the endpoint answers `power status` (-C 3, so a peer that
# ignores Get Channel Cipher Suites is not slowed down); 0 when it does
wait_ready() { # name
	local name=$1 i
	for ((i = 0; i < 40; i++)); do
		kill -0 "${PID[$name]}" 2>/dev/null || return 1
		if timeout -k 1 5 ipmitool -I lanplus -H "$HOST" -p "${PORT[$name]}" -U "$IPMI_USER" -P "$IPMI_PASS" \
			-C 3 power status 2>/dev/null | grep -q '^Chassis Power is'; then
			return 0
		fi
		sleep 0.25
	done
	return 1
}

stop_endpoint() { # name
	local name=$1 p=${PID[$1]:-} i
	[[ -n $p ]] || return 0
	kill "$p" 2>/dev/null || true
	for ((i = 0; i < 25; i++)); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.2
	done
	kill -9 "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
	unset "PID[$name]"
}

fail_endpoint() { # name reason
	STATUS[$1]="failed: $2"
	log "$1: $2"
	stop_endpoint "$1"
}

# ---------------------------------------------------------------- endpoints

start_bridge() {
	local dir=$WORK/bridge i n
	mkdir -p "$dir"
	NEP[bridge]=$VMS
	if [[ -z $BRIDGE ]]; then
		log "bridge: go build ./cmd/ipmi-vmware-bridge"
		if ! (cd "$ROOT" && timeout 900 go build -o "$dir/ipmi-vmware-bridge" ./cmd/ipmi-vmware-bridge) >"$dir/build.log" 2>&1; then
			STATUS[bridge]="failed: go build: $(last_line "$dir/build.log")"
			return
		fi
		BRIDGE=$dir/ipmi-vmware-bridge
	fi
	log "bridge: serve --vms $VMS on $HOST"
	"$BRIDGE" serve --vms "$VMS" --listen "$HOST" --base-port 0 --sim-addr "$HOST:0" \
		--socket "$dir/api.sock" --metrics-address - --redfish-address - \
		</dev/null >"$dir/out" 2>"$dir/err" &
	PID[bridge]=$!
	# the banner lists one udp://127.0.0.1:PORT per BMC once they all serve
	for ((i = 0; i < 600; i++)); do
		n=$(grep -cE "udp://127\.0\.0\.1:[0-9]+" "$dir/out" 2>/dev/null || true)
		((${n:-0} >= VMS)) && break
		kill -0 "${PID[bridge]}" 2>/dev/null || break
		sleep 0.1
	done
	if ((${n:-0} < VMS)); then
		fail_endpoint bridge "$n of $VMS BMCs in the banner: $(last_line "$dir/err")"
		return
	fi
	PORT[bridge]=$(grep -oE "udp://127\.0\.0\.1:[0-9]+" "$dir/out" | sed -n '1s/.*://p')
	if ! wait_ready bridge; then
		fail_endpoint bridge "no answer on $HOST:${PORT[bridge]}: $(last_line "$dir/err")"
		return
	fi
	STATUS[bridge]=ok
}

start_ipmi_sim() {
	local dir=$WORK/ipmi_sim
	mkdir -p "$dir/state"
	NEP[ipmi_sim]=1
	if ! command -v ipmi_sim >/dev/null; then
		apt_install openipmi || true
	fi
	if ! command -v ipmi_sim >/dev/null; then
		STATUS[ipmi_sim]="failed: ipmi_sim not installed (apt-get install openipmi)"
		return
	fi
	PORT[ipmi_sim]=$(free_udp_port)
	sed "s/@PORT@/${PORT[ipmi_sim]}/g" "$BENCH_DIR/ipmi_sim/lan.conf.in" >"$dir/lan.conf"
	log "ipmi_sim: $HOST:${PORT[ipmi_sim]}"
	ipmi_sim -c "$dir/lan.conf" -f "$BENCH_DIR/ipmi_sim/bmc.emu" -s "$dir/state" -n \
		</dev/null >"$dir/out" 2>"$dir/err" &
	PID[ipmi_sim]=$!
	if ! wait_ready ipmi_sim; then
		fail_endpoint ipmi_sim "no answer on $HOST:${PORT[ipmi_sim]}: $(last_line "$dir/err")"
		return
	fi
	STATUS[ipmi_sim]=ok
}

start_pyghmi() {
	local dir=$WORK/pyghmi i
	mkdir -p "$dir"
	NEP[pyghmi]=1
	if [[ ! -x $PYTHON ]]; then
		STATUS[pyghmi]="failed: no $PYTHON"
		return
	fi
	if ! "$PYTHON" -c 'import pyghmi.ipmi.bmc' 2>/dev/null; then
		apt_install python3-pyghmi || true
	fi
	if ! "$PYTHON" -c 'import pyghmi.ipmi.bmc' >"$dir/import.log" 2>&1; then
		STATUS[pyghmi]="failed: $PYTHON cannot import pyghmi.ipmi.bmc: $(last_line "$dir/import.log")"
		return
	fi
	"$PYTHON" "$BENCH_DIR/pyghmi_bmc.py" --address "$HOST" --port 0 --user "$IPMI_USER" --password "$IPMI_PASS" \
		</dev/null >"$dir/out" 2>"$dir/err" &
	PID[pyghmi]=$!
	for ((i = 0; i < 100; i++)); do
		grep -q '^listening ' "$dir/out" 2>/dev/null && break
		kill -0 "${PID[pyghmi]}" 2>/dev/null || break
		sleep 0.1
	done
	PORT[pyghmi]=$(sed -n 's/^listening .*:\([0-9]*\)$/\1/p' "$dir/out" 2>/dev/null | sed -n 1p)
	if [[ -z ${PORT[pyghmi]} ]]; then
		fail_endpoint pyghmi "did not start: $(last_line "$dir/err")"
		return
	fi
	log "pyghmi: $HOST:${PORT[pyghmi]}"
	if ! wait_ready pyghmi; then
		fail_endpoint pyghmi "no answer on $HOST:${PORT[pyghmi]}: $(last_line "$dir/err")"
		return
	fi
	STATUS[pyghmi]=ok
}

# ---------------------------------------------------------------- workloads

# why an endpoint leaves a RAKP message unanswered, where it is known
rakp_why() { # name
	if [[ $1 == bridge ]]; then
		# shellcheck disable=SC2016 # Markdown backticks, not a command
		printf '%s' ' The bridge drops session-setup packets (Open Session, RAKP 1, RAKP 3) beyond 20 a second per source address and BMC, in bursts of up to 40 (ipmi.DefaultGuard in internal/ipmi/guard.go; `ipmi.sessionSetupRate` in a config file); back-to-back ipmitool processes from one address exceed that, and with `--debug` the bridge logs "session setup dropped ... rate limited".'
	fi
}

# Workload 1: RUNS whole ipmitool processes, one after the other.
# Sets RES[name.key.{mean,p50,p95,ok}] (ms) or RES[name.key.err].
oneshot() { # name key ipmitool-args...
	local name=$1 key=$2
	shift 2
	local dir=$WORK/$name port=${PORT[$name]} times ok=0 fail=0 tmo=0 done=0 probe=0 rakp=0 slow=0 reason="" t0 t1 rc i start=$SECONDS
	times=$dir/$key.times
	: >"$times"
	log "$name: workload $(wl_label "$key"): $RUNS x ipmitool ${*:+$* }power status"
	for ((i = 1; i <= RUNS; i++)); do
		if ((SECONDS - start >= BUDGET)); then break; fi
		rc=0
		t0=$(now_ns)
		ipmi "$port" "$@" power status >"$dir/$key.out" 2>"$dir/$key.err" || rc=$?
		t1=$(now_ns)
		done=$((done + 1))
		if grep -q 'Unable to Get Channel Cipher Suites' "$dir/$key.err"; then probe=$((probe + 1)); fi
		if grep -q 'no response from RAKP' "$dir/$key.err"; then rakp=$((rakp + 1)); fi
		if ((rc == 0)) && grep -q '^Chassis Power is' "$dir/$key.out"; then
			ok=$((ok + 1))
			echo $(((t1 - t0) / 1000)) >>"$times"
			if (((t1 - t0) >= 1000000000)); then slow=$((slow + 1)); fi
		elif ((rc == 124 || rc == 137)); then
			tmo=$((tmo + 1))
		else
			fail=$((fail + 1))
			reason=$(last_line "$dir/$key.err")
			[[ -n $reason ]] || reason="exit $rc"
		fi
	done
	RES[$name.$key.ok]="$ok/$RUNS"
	((tmo == 0)) || RES[$name.$key.ok]+=", $tmo timeout (${CALL_TIMEOUT}s)"
	((fail == 0)) || RES[$name.$key.ok]+=", $fail failed: $reason"
	((done == RUNS)) || RES[$name.$key.ok]+=", $((RUNS - done)) skipped (BUDGET ${BUDGET}s)"
	RES[$name.$key.slow]="$slow/$ok"
	if ((rakp > 0)); then
		NOTES+=("$name, workload $(wl_label "$key"): in $rakp of $done runs ipmitool printed \"no response from RAKP n message\", waited out its retry timeout (1 s, ipmitool -N) and redid the session handshake.$(rakp_why "$name")")
	fi
	if ((probe > 0)); then
		NOTES+=("$name, workload $(wl_label "$key"): in $probe of $done runs ipmitool printed \"Unable to Get Channel Cipher Suites\": the BMC sent no answer to the sessionless Get Channel Cipher Suites request (NetFn App, 54h), ipmitool retried it until it gave up and then fell back to suite 3. That wait is part of the times above.")
	fi
	if ((ok == 0)); then
		if ((tmo > 0)); then
			RES[$name.$key.err]="timeout (${CALL_TIMEOUT}s)"
		else
			RES[$name.$key.err]="failed: ${reason:-no run}"
		fi
		return
	fi
	local stats
	stats=$(sort -n "$times" | awk '{v[NR] = $1; s += $1}
		END {
			n = NR
			i50 = int(n * 0.50); if (i50 < n * 0.50) i50++; if (i50 < 1) i50 = 1
			i95 = int(n * 0.95); if (i95 < n * 0.95) i95++; if (i95 < 1) i95 = 1
			printf "%.3f %.3f %.3f", s / n / 1000, v[i50] / 1000, v[i95] / 1000
		}')
	local mean p50 p95
	read -r mean p50 p95 <<<"$stats"
	RES[$name.$key.mean]=$mean
	RES[$name.$key.p50]=$p50
	RES[$name.$key.p95]=$p95
}

# Workload 2: STREAMS concurrent `ipmitool exec` of LINES `power status`.
# Sets RES[name.key.{wall,rps,ok}] or RES[name.key.err].
streams() { # name key ipmitool-args...
	local name=$1 key=$2
	shift 2
	local dir=$WORK/$name port=${PORT[$name]} s p rc t0 t1 okreq tmo=0 fail=0 reason="" total wall_ms probe=0 rakp=0
	local pids=()
	total=$((STREAMS * LINES))
	log "$name: workload $(wl_label "$key"): $STREAMS x ipmitool ${*:+$* }exec ($LINES x power status)"
	t0=$(now_ns)
	for ((s = 1; s <= STREAMS; s++)); do
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
			reason=$(last_line "$dir/$key.$s.err")
			[[ -n $reason ]] || reason="exit $rc"
		fi
		if grep -q 'Unable to Get Channel Cipher Suites' "$dir/$key.$s.err"; then probe=$((probe + 1)); fi
		if grep -q 'no response from RAKP' "$dir/$key.$s.err"; then rakp=$((rakp + 1)); fi
	done
	t1=$(now_ns)
	CLIENT_PIDS=()
	okreq=$(cat "$dir/$key".*.out | grep -c '^Chassis Power is' || true)
	wall_ms=$(((t1 - t0) / 1000000))
	((wall_ms > 0)) || wall_ms=1
	RES[$name.$key.ok]="$okreq/$total"
	((tmo == 0)) || RES[$name.$key.ok]+=", $tmo of $STREAMS streams timed out (${STREAM_TIMEOUT}s)"
	((fail == 0)) || RES[$name.$key.ok]+=", $fail streams failed: $reason"
	if ((rakp > 0)); then
		NOTES+=("$name, workload $(wl_label "$key"): $rakp of $STREAMS streams printed \"no response from RAKP n message\" and redid the session handshake after ipmitool's 1 s retry timeout.$(rakp_why "$name")")
	fi
	if ((probe > 0)); then
		NOTES+=("$name, workload $(wl_label "$key"): $probe of $STREAMS streams printed \"Unable to Get Channel Cipher Suites\"; each stream waited for the unanswered Get Channel Cipher Suites once, before opening its session.")
	fi
	if ((okreq == 0)); then
		if ((tmo > 0)); then
			RES[$name.$key.err]="timeout (${STREAM_TIMEOUT}s)"
		else
			RES[$name.$key.err]="failed: ${reason:-no answer}"
		fi
		return
	fi
	RES[$name.$key.wall]=$wall_ms
	RES[$name.$key.rps]=$(awk -v n="$okreq" -v ms="$wall_ms" 'BEGIN {printf "%.1f", n * 1000 / ms}')
}

measure_rss() { # name key
	local kb
	kb=$(rss_kb "${PID[$1]}")
	RES[$1.$2.total]=$kb
	RES[$1.$2.per]=$(awk -v kb="$kb" -v n="${NEP[$1]}" 'BEGIN {printf "%.1f", kb / n}')
}

# ---------------------------------------------------------------- formatting

fmt_ms() { # milliseconds
	awk -v v="$1" 'BEGIN {
		if (v >= 1000) printf "%.2f s", v / 1000
		else if (v >= 10) printf "%.1f ms", v
		else printf "%.2f ms", v }'
}

fmt_kb() { # kB
	awk -v v="$1" 'BEGIN {
		if (v >= 10240) printf "%.1f MiB", v / 1024
		else printf "%.0f KiB", v }'
}

fmt_x() {
	awk -v r="$1" 'BEGIN { if (r >= 100) printf "%.0f", r; else if (r >= 10) printf "%.1f", r; else printf "%.2f", r }'
}

# ratio cell: kind "lower" (time, memory: smaller is better) or "higher" (rate)
ratio() { # kind bridge-value peer-value better-word worse-word
	local kind=$1 b=$2 p=$3 r
	if [[ -z $b || -z $p ]]; then
		printf 'n/a'
		return
	fi
	if [[ $kind == lower ]]; then
		r=$(awk -v b="$b" -v p="$p" 'BEGIN { if (b <= 0) print 0; else printf "%.6f", p / b }')
	else
		r=$(awk -v b="$b" -v p="$p" 'BEGIN { if (p <= 0) print 0; else printf "%.6f", b / p }')
	fi
	if awk -v r="$r" 'BEGIN { exit !(r <= 0) }'; then
		printf 'n/a'
	elif awk -v r="$r" 'BEGIN { exit !(r >= 1) }'; then
		printf '**%s×** %s' "$(fmt_x "$r")" "$4"
	else
		printf '%s× (%s× %s)' "$(fmt_x "$r")" "$(fmt_x "$(awk -v r="$r" 'BEGIN {print 1 / r}')")" "$5"
	fi
}

# value cell for endpoint NAME: the endpoint's failure, the workload's
# failure, or the formatted value
cell() { # name key field formatter
	local name=$1 key=$2 field=$3 fmt=$4
	if [[ ${STATUS[$name]:-} != ok* ]]; then
		# the reason once, in the first row; the notes repeat it
		if [[ $key == w1 && $field == mean ]]; then
			printf '%s' "${STATUS[$name]:-not run}"
		else
			printf 'failed'
		fi
	elif [[ $field == ok && -n ${RES[$name.$key.ok]:-} ]]; then
		printf '%s' "${RES[$name.$key.ok]}"
	elif [[ -n ${RES[$name.$key.err]:-} ]]; then
		printf '%s' "${RES[$name.$key.err]}"
	elif [[ -n ${RES[$name.$key.$field]:-} ]]; then
		case $fmt in
		ms) fmt_ms "${RES[$name.$key.$field]}" ;;
		kb) fmt_kb "${RES[$name.$key.$field]}" ;;
		rps) printf '%s req/s' "${RES[$name.$key.$field]}" ;;
		*) printf '%s' "${RES[$name.$key.$field]}" ;;
		esac
	else
		printf 'not run'
	fi
}

val() { # name key field: the raw value, empty when unusable
	if [[ ${STATUS[$1]:-} == ok* && -z ${RES[$1.$2.err]:-} ]]; then
		printf '%s' "${RES[$1.$2.$3]:-}"
	fi
}

row() { # label key field format ratio-kind better worse
	local label=$1 key=$2 field=$3 fmt=$4 kind=$5 better=$6 worse=$7 line peer
	line="| $label | $(cell bridge "$key" "$field" "$fmt") | $(cell ipmi_sim "$key" "$field" "$fmt") | $(cell pyghmi "$key" "$field" "$fmt")"
	for peer in ipmi_sim pyghmi; do
		if [[ $kind == none ]]; then
			line+=" | "
		else
			line+=" | $(ratio "$kind" "$(val bridge "$key" "$field")" "$(val "$peer" "$key" "$field")" "$better" "$worse")"
		fi
	done
	printf '%s |\n' "$line"
}

# ---------------------------------------------------------------- main

if ! command -v ipmitool >/dev/null; then
	apt_install ipmitool || true
fi
command -v ipmitool >/dev/null || die "ipmitool is needed (apt-get install ipmitool)"

for ((i = 0; i < LINES; i++)); do echo 'power status'; done >"$WORK/commands"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

for name in "${ENDPOINTS[@]}"; do
	"start_$name"
	if [[ ${STATUS[$name]} != ok ]]; then
		log "$name: ${STATUS[$name]}"
		continue
	fi
	sleep 1
	measure_rss "$name" idle
	sleep "$PAUSE"
	oneshot "$name" w1
	if [[ $WITH_C3 == 1 ]]; then
		sleep "$PAUSE"
		oneshot "$name" w1c3 -C 3
	fi
	sleep "$PAUSE"
	streams "$name" w2
	if [[ $WITH_C3 == 1 ]]; then
		sleep "$PAUSE"
		streams "$name" w2c3 -C 3
	fi
	if ! kill -0 "${PID[$name]}" 2>/dev/null; then
		STATUS[$name]="ok (exited during the run: $(last_line "$WORK/$name/err"))"
		RES[$name.after.err]="exited"
	else
		measure_rss "$name" after
	fi
	stop_endpoint "$name"
done

# ---------------------------------------------------------------- report

ipmitool_version=$(ipmitool -V 2>/dev/null | awk '{print $NF}' || true)
openipmi_version=$(dpkg-query -W -f '${Version}' openipmi 2>/dev/null || echo '?')
pyghmi_version=$(dpkg-query -W -f '${Version}' python3-pyghmi 2>/dev/null || echo '?')
bridge_rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || true)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

report() {
	echo "### IPMI endpoint benchmark"
	echo
	echo "$(date -u +%Y-%m-%d), $(nproc) CPUs (${cpu:-unknown CPU}), Linux $(uname -r); ipmitool ${ipmitool_version:-?}," \
		"everything on 127.0.0.1. bridge: ipmi-vmware-bridge $bridge_rev, \`serve\` with the embedded vCenter simulator," \
		"one process serving $VMS BMCs (workloads use the first); ipmi_sim: OpenIPMI $openipmi_version, one BMC;" \
		"pyghmi: \`pyghmi.ipmi.bmc.Bmc\` from python3-pyghmi $pyghmi_version (virtualbmc's engine), one BMC, an in-memory machine." \
		"Client: \`ipmitool -I lanplus -H 127.0.0.1 -p PORT -U admin -P password\`." \
		"Load average before / after the run: $LOAD_START / $LOAD_END."
	echo
	echo "| workload | bridge ($VMS BMCs in 1 process) | ipmi_sim | pyghmi | bridge vs ipmi_sim | bridge vs pyghmi |"
	echo "|---|---|---|---|---|---|"
	row "1. one \`ipmitool ... power status\` process, no \`-C\`: mean of $RUNS" w1 mean ms lower faster slower
	row "1. p50" w1 p50 ms lower faster slower
	row "1. p95" w1 p95 ms lower faster slower
	row "1. runs that printed the power state" w1 ok text none "" ""
	row "1. of those, runs that took 1 s or more" w1 slow text none "" ""
	if [[ $WITH_C3 == 1 ]]; then
		row "1b. the same with \`-C 3\`: mean of $RUNS" w1c3 mean ms lower faster slower
		row "1b. p95" w1c3 p95 ms lower faster slower
		row "1b. runs that printed the power state" w1c3 ok text none "" ""
		row "1b. of those, runs that took 1 s or more" w1c3 slow text none "" ""
	fi
	row "2. $STREAMS parallel \`ipmitool ... exec\` of $LINES \`power status\`, no \`-C\`: wall time" w2 wall ms lower faster slower
	row "2. throughput" w2 rps rps higher faster slower
	row "2. requests answered" w2 ok text none "" ""
	if [[ $WITH_C3 == 1 ]]; then
		row "2b. the same with \`-C 3\`: wall time" w2c3 wall ms lower faster slower
		row "2b. throughput" w2c3 rps rps higher faster slower
		row "2b. requests answered" w2c3 ok text none "" ""
	fi
	row "3. memory per BMC (VmRSS / BMCs), idle after start" idle per kb lower "less memory" "more memory"
	row "3. memory per BMC after the workloads" after per kb lower "less memory" "more memory"
	row "3. VmRSS of the process after the workloads" after total kb none "" ""
	echo
	echo "Ratios: time and memory are peer ÷ bridge, throughput is bridge ÷ peer; above 1 the bridge is ahead."
	echo "Each workload starts after ${PAUSE} s idle. p50/p95 are nearest-rank over the successful runs. The bridge's RSS includes the embedded vCenter simulator"
	echo "(govmomi's vcsim) holding the $VMS VMs; against a real vCenter that part is not in the process."
	local n
	for n in "${ENDPOINTS[@]}"; do
		if [[ ${STATUS[$n]:-} != ok* ]]; then
			NOTES+=("$n could not be benchmarked: ${STATUS[$n]:-not run}.")
		fi
	done
	for n in "${NOTES[@]}"; do
		echo
		echo "- $n"
	done
}

if [[ -n $OUT ]]; then
	report | tee "$OUT"
else
	report
fi
