#!/usr/bin/env bash
# scripts/fuzz-ipmi.sh: fuzz the IPMI datagram path twice, for DURATION each.
#
# 1. The native Go fuzz target over the production datagram path:
#        go test ./internal/ipmi -run '^$' -fuzz '^FuzzDatagram$' -fuzztime DURATION -fuzzminimizetime 5s
#    At the end: the last status line, executions, new interesting inputs and
#    coverage bits (GODEBUG=fuzzdebug=1 makes Go print those).
# 2. A running daemon: builds the bridge, starts `serve` (simulator, 5 BMCs on
#    UDP 127.0.0.1:BASE_PORT..+4) and runs scripts/ipmifuzz against it: mutated
#    datagrams from the FuzzDatagram corpus (bit flips, boundary bytes,
#    truncation, extension, splicing, length fields), RATE a second from
#    SOURCES addresses 127.0.2.x, for DURATION. Every 30 s: datagrams sent,
#    replies, the daemon's RSS and CPU time, and whether it still answers real
#    `ipmitool -I lanplus` and `-I lan` power status. At the end: RSS at start
#    and end, the dropped-datagram and handler-panic metrics.
#
# Run:    scripts/fuzz-ipmi.sh            (10 minutes each, ~20 minutes in all)
#         scripts/fuzz-ipmi.sh 30s        (any Go duration: 45s, 2m, 1h30m)
# Env:    RATE=3000 SOURCES=64   datagrams/s and source addresses of the mutator
#         BASE_PORT=6230         first BMC port (the ports must be free)
#         KEEP=1                 keep the temporary directory (logs, datagrams)
#         ONLY=go or ONLY=daemon runs only part 1 or part 2
# Needs Go, ipmitool and curl; talks to 127.0.0.0/8 only.
#
# Exit status 1 when the Go fuzzer finds a failing input (Go writes it under
# internal/ipmi/testdata/fuzz/FuzzDatagram/), or when the daemon dies or stops
# answering ipmitool. Then, and when the daemon logs a recovered panic, the
# last datagrams sent before it (and the daemon's log tail) are copied to
# /tmp/ipmifuzz-crash.txt.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

DURATION=${1:-10m}
RATE=${RATE:-3000}
SOURCES=${SOURCES:-64}
BASE_PORT=${BASE_PORT:-6230}
KEEP=${KEEP:-0}
ONLY=${ONLY:-}
SAMPLE=30
HOST=127.0.0.1
CRASH_FILE=/tmp/ipmifuzz-crash.txt

log() { printf '[fuzz-ipmi %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "error: $*" >&2; exit 1; }

# DURATION in seconds: a Go duration made of h, m and s parts
[[ $DURATION =~ ^([0-9]+h)?([0-9]+m)?([0-9]+s)?$ && -n $DURATION ]] ||
	die "usage: $0 [DURATION]   (e.g. 30s, 10m, 1h30m; got '$DURATION')"
DURATION_S=0
for part in $(grep -oE '[0-9]+[hms]' <<<"$DURATION"); do
	case $part in
	*h) DURATION_S=$((DURATION_S + 10#${part%h} * 3600)) ;;
	*m) DURATION_S=$((DURATION_S + 10#${part%m} * 60)) ;;
	*s) DURATION_S=$((DURATION_S + 10#${part%s})) ;;
	esac
done
((DURATION_S >= 1)) || die "DURATION must be at least 1s"
for tool in go ipmitool curl ss; do
	command -v "$tool" >/dev/null || die "$tool is needed"
done
[[ -z $ONLY || $ONLY == go || $ONLY == daemon ]] || die "ONLY must be go or daemon"
PORTS=$(seq "$BASE_PORT" $((BASE_PORT + 4)))

TMP=$(mktemp -d "${TMPDIR:-/tmp}/fuzz-ipmi.XXXXXX")
FUZZ_PID= BRIDGE_PID= MUTATOR_PID= SLEEP_PID=

# PID and all its descendants
tree_pids() {
	local c
	echo "$1"
	for c in $(pgrep -P "$1" 2>/dev/null || true); do tree_pids "$c"; done
}

# stop PID (and its children): TERM, then KILL after 5 s
stop() {
	local pid=$1 p i pids
	[[ -n $pid ]] || return 0
	pids=$(tree_pids "$pid")
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
	wait "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[[ -z $SLEEP_PID ]] || kill "$SLEEP_PID" 2>/dev/null || true
	stop "$FUZZ_PID"
	stop "$MUTATOR_PID"
	stop "$BRIDGE_PID"
	if [[ $KEEP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# sleep that INT and TERM interrupt at once
nap() {
	sleep "$1" &
	SLEEP_PID=$!
	wait "$SLEEP_PID" || true
	SLEEP_PID=
}

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }
# utime + stime of a process, in seconds
cpu_s() {
	awk -v tck="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.1f", ($12 + $13) / tck}' "/proc/$1/stat" 2>/dev/null || echo 0
}
alive() { [[ -n $1 ]] && kill -0 "$1" 2>/dev/null && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# the BMC ports must be free: the mutator must not flood anything but our daemon
ports_free() {
	local port
	for port in $PORTS; do
		if ss -Huan "sport = :$port" | grep -q .; then
			die "UDP port $port is in use already (another bridge?); free it or set BASE_PORT"
		fi
	done
}
[[ $ONLY == go ]] || ports_free

failed=0
FUZZ_SUMMARY="go fuzz: not run (ONLY=$ONLY)"

# ------------------------------------------------------------ 1. go test -fuzz

go_fuzz() {
	local status last bits0 bits1 verdict next fuzz_rc=0
	log "1/2 go test ./internal/ipmi -run '^\$' -fuzz '^FuzzDatagram\$' -fuzztime $DURATION -fuzzminimizetime 5s"
	GODEBUG=fuzzdebug=1 go test ./internal/ipmi -run '^$' -fuzz '^FuzzDatagram$' -fuzztime "$DURATION" -fuzzminimizetime 5s \
		</dev/null >"$TMP/gofuzz.log" 2>&1 &
	FUZZ_PID=$!
	next=$((SECONDS + SAMPLE))
	while alive "$FUZZ_PID"; do
		nap 1
		if ((SECONDS >= next)); then
			status=$(grep '^fuzz: elapsed:' "$TMP/gofuzz.log" | tail -n 1 || true)
			log "${status:-building the fuzz target (instrumented), not fuzzing yet}"
			next=$((SECONDS + SAMPLE))
		fi
	done
	wait "$FUZZ_PID" || fuzz_rc=$?
	FUZZ_PID=

	last=$(grep '^fuzz: elapsed:' "$TMP/gofuzz.log" | grep 'execs:' | tail -n 1 || true)
	bits0=$(grep -oE 'initial coverage bits: [0-9]+' "$TMP/gofuzz.log" | tail -n 1 | grep -oE '[0-9]+$' || true)
	bits1=$(grep -oE 'total bits: [0-9]+' "$TMP/gofuzz.log" | tail -n 1 | grep -oE '[0-9]+$' || true)
	bits1=${bits1:-$bits0}
	echo "last status: ${last:-none}"
	if grep -q 'Failing input' "$TMP/gofuzz.log"; then
		verdict="FAILED: a failing input"
		failed=1
		grep -vE '^(fuzz: elapsed|[0-9-]+ [0-9:.]+ DEBUG)' "$TMP/gofuzz.log" | tail -n 40
	elif ((fuzz_rc != 0)) && grep -q 'context deadline exceeded' "$TMP/gofuzz.log"; then
		verdict="ok (the coordinator ended with \"context deadline exceeded\", not a finding)"
	elif ((fuzz_rc != 0)); then
		verdict="FAILED: go test exited with $fuzz_rc without fuzzing to the end"
		failed=1
		grep -v ' DEBUG ' "$TMP/gofuzz.log" | tail -n 20
	else
		verdict=ok
	fi
	if [[ $last =~ elapsed:\ ([^,]+),\ execs:\ ([0-9]+)\ \(([0-9]+)/sec\),\ new\ interesting:\ ([0-9]+)\ \(total:\ ([0-9]+)\) ]]; then
		FUZZ_SUMMARY="go fuzz: ${BASH_REMATCH[2]} execs in ${BASH_REMATCH[1]}, new interesting: ${BASH_REMATCH[4]} (corpus total ${BASH_REMATCH[5]}), coverage bits: ${bits0:-?} -> ${bits1:-?}; $verdict"
	else
		FUZZ_SUMMARY="go fuzz: no status line; $verdict"
	fi
	echo "$FUZZ_SUMMARY"
}
[[ $ONLY == daemon ]] || go_fuzz
if [[ $ONLY == go ]]; then
	((!failed)) || exit 1
	exit 0
fi

# ------------------------------------------------------------ 2. a running daemon

log "2/2 mutation fuzzing a running daemon for $DURATION ($RATE datagrams/s from $SOURCES sources 127.0.2.x to $HOST:$BASE_PORT-$((BASE_PORT + 4)))"
ports_free
go build -o "$TMP/bridge" ./cmd/ipmi-vmware-bridge 2>"$TMP/build.log" &&
	go build -o "$TMP/ipmifuzz" ./scripts/ipmifuzz 2>>"$TMP/build.log" ||
	die "go build failed: $(tail -n 5 "$TMP/build.log")"
"$TMP/bridge" serve --base-port "$BASE_PORT" --sim-addr "$HOST:0" --metrics-address "$HOST:0" \
	--redfish-address - --console-address - --socket "$TMP/sock" --state-dir "$TMP/state" \
	</dev/null >"$TMP/bridge.out" 2>"$TMP/bridge.err" &
BRIDGE_PID=$!

# one ipmitool request; 0 when it got an answer
ipmi() { # interface port
	local out
	out=$(timeout -k 2 20 ipmitool -I "$1" -H "$HOST" -p "$2" -U admin -P password power status </dev/null 2>&1) || true
	[[ $out == *"Chassis Power is"* ]]
}

ready=0
for ((i = 0; i < 120; i++)); do
	alive "$BRIDGE_PID" || break
	if ipmi lanplus "$BASE_PORT"; then ready=1 && break; fi
	nap 0.5
done
((ready)) || die "the daemon does not answer on $HOST:$BASE_PORT: $(tail -n 5 "$TMP/bridge.err")"
for port in $PORTS; do
	ss -Huanp "sport = :$port" | grep -q "pid=$BRIDGE_PID," || die "UDP port $port is not the daemon's"
done
METRICS=$(grep -oE 'http://[0-9.:]+/metrics' "$TMP/bridge.out" | head -n 1)
rss0=$(rss_kb "$BRIDGE_PID")
cpu0=$(cpu_s "$BRIDGE_PID")
log "daemon pid $BRIDGE_PID ready, RSS $(mib "$rss0"), CPU ${cpu0}s; metrics $METRICS"

"$TMP/ipmifuzz" -corpus internal/ipmi/testdata/fuzz/FuzzDatagram -host "$HOST" \
	-ports "$BASE_PORT-$((BASE_PORT + 4))" -sources "$SOURCES" -rate "$RATE" -duration "${DURATION_S}s" \
	-pid "$BRIDGE_PID" -daemon-log "$TMP/bridge.err" \
	-stats "$TMP/stats" -dump "$TMP/lastsent.txt" -events "$TMP" \
	</dev/null >"$TMP/ipmifuzz.log" 2>&1 &
MUTATOR_PID=$!

counter() { # name: a counter from the mutator's stats line
	grep -oE "(^| )$1=[0-9]+" "$TMP/stats" 2>/dev/null | cut -d= -f2 || echo 0
}

# the daemon's last words: from a Go panic or fatal error on, else the
# panics it recovered from, else its log's tail
crash_lines() {
	local at
	at=$(grep -n -m 1 -E '^(panic: |fatal error: |SIG[A-Z]+: )' "$TMP/bridge.err" | cut -d: -f1 || true)
	if [[ -n $at ]]; then
		sed -n "$at,$((at + 80))p" "$TMP/bridge.err"
	elif grep -q 'panicked' "$TMP/bridge.err"; then
		grep 'panicked' "$TMP/bridge.err" | head -n 5
	else
		tail -n 60 "$TMP/bridge.err"
	fi
}

# a sample: counters, RSS, CPU, and a real lanplus and lan request (each
# retried once: a datagram may be lost in a flood); sets unanswered
n_sample=0 unanswered=0 dead=0 rss_last=$rss0
sample() { # label
	local port=$((BASE_PORT + n_sample % 5)) plus=ok lan=ok
	n_sample=$((n_sample + 1))
	if ! alive "$BRIDGE_PID"; then
		dead=1
		log "$1 THE DAEMON EXITED after RSS $(mib "$rss_last"): $(crash_lines | head -n 1)"
		return
	fi
	ipmi lanplus "$port" || ipmi lanplus "$port" || plus=FAILED
	ipmi lan "$port" || ipmi lan "$port" || lan=FAILED
	[[ $plus == ok && $lan == ok ]] || unanswered=1
	rss_last=$(rss_kb "$BRIDGE_PID")
	log "$1 sent=$(counter sent) replies=$(counter replies) rss=$(mib "$rss_last") cpu=$(cpu_s "$BRIDGE_PID")s" \
		"port $port: lanplus $plus, lan $lan"
}

START=$SECONDS
next=$((START + SAMPLE))
while alive "$MUTATOR_PID"; do
	nap 1
	alive "$BRIDGE_PID" || break
	if ((SECONDS >= next)); then
		sample "t=$((SECONDS - START))s"
		((!unanswered)) || break
		next=$((SECONDS + SAMPLE))
	fi
	((SECONDS < START + DURATION_S + 60)) || { log "the mutator did not stop at the deadline"; break; }
done
stop "$MUTATOR_PID" # it has stopped by itself unless something went wrong; it dumps its last datagrams
MUTATOR_PID=
elapsed=$((SECONDS - START))
sample "t=${elapsed}s (end)"
rss1=$(rss_kb "$BRIDGE_PID")
cpu1=$(cpu_s "$BRIDGE_PID")
grep -v 'last datagrams sent are in' "$TMP/ipmifuzz.log" || true

echo
echo "== figures"
echo "$FUZZ_SUMMARY"
awk -v s="$(counter sent)" -v r="$(counter replies)" -v e="$(counter send_errors)" -v m="$(counter max_reply)" \
	-v sb="$(counter sent_bytes)" -v rb="$(counter reply_bytes)" -v t="$(counter elapsed_ms)" -v pi="$(counter pings)" -v po="$(counter pongs)" 'BEGIN {
	t /= 1000
	printf "daemon fuzz: %d datagrams sent in %.0fs (%.0f/s, %d send errors), %d replies (%.1f%%), %d bytes out / %d bytes back, largest reply %d bytes; RMCP pings answered %d/%d\n",
		s, t, (t > 0 ? s / t : 0), e, r, (s > 0 ? 100 * r / s : 0), sb, rb, m, po, pi }'
if ((dead)); then
	echo "daemon: RSS start $(mib "$rss0"), last seen $(mib "$rss_last"); EXITED during the run"
else
	echo "daemon: RSS start $(mib "$rss0"), end $(mib "$rss1"); CPU $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.1f", b - a}')s user+system during the run"
	echo "metrics (dropped datagrams, handler panics):"
	if metrics=$(curl -fsS --max-time 5 "$METRICS" 2>&1); then
		grep -E 'dropped|handler_panics_total' <<<"$metrics" | grep -v '^#' | sed 's/^/  /' || echo "  (none found)"
		awk '/^[a-z_]*dropped[a-z_]*[{ ]/ {n += $NF} END {printf "  (dropped in all: %d)\n", n}' <<<"$metrics"
	else
		echo "  $METRICS: $metrics"
	fi
fi
echo "daemon log: $(grep -c 'level=WARN' "$TMP/bridge.err" || true) WARN, $(grep -c 'level=ERROR' "$TMP/bridge.err" || true) ERROR lines"
grep -E 'level=(WARN|ERROR)' "$TMP/bridge.err" | sed -E 's/^time=[^ ]+ //; s/ (source|client)=[^ ]+//g' | cut -c1-200 |
	sort | uniq -c | sort -rn | head -n 5 || true

panics=$(grep -c 'panicked' "$TMP/bridge.err" || true)
if ((dead || unanswered || panics)); then
	if ((dead)); then why="the daemon exited"; elif ((unanswered)); then why="the daemon stopped answering ipmitool"; else why="the daemon recovered from $panics panics"; fi
	for f in "$TMP/event-exit.txt" "$TMP/event-unresponsive.txt" "$TMP/event-panic.txt" "$TMP/lastsent.txt" ""; do
		[[ -z $f || -s $f ]] && break
	done
	{
		echo "# fuzz-ipmi.sh $(date -u +%FT%TZ): $why"
		[[ -z $f ]] || cat "$f"
		echo "# ---- the daemon's log"
		crash_lines
	} >"$CRASH_FILE"
	echo "$why: the last datagrams sent and the daemon's log are in $CRASH_FILE"
fi
if ((dead || unanswered)); then failed=1; fi
if ((failed)); then
	echo "RESULT: FAILED"
	exit 1
fi
echo "RESULT: ok (the daemon lived and answered throughout)"
