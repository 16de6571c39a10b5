#!/usr/bin/env bash
# scripts/soak.sh: a soak run of the bridge, not a CI test.
#
# It builds the bridge (BRIDGE=/path/to/binary skips the build), starts
# `serve` in simulator mode with $VMS (100) VMs, so one process serves 100 BMCs
# on 127.0.0.1, and drives them for $DURATION with $WORKERS (20) concurrent
# loops of one whole ipmitool process per request (`ipmitool -I lanplus
# -H 127.0.0.1 -p PORT -U admin -P password ...`, no -C), each request going to
# a random BMC with a random command from this mix:
#     30% power status          20% chassis status
#     10% chassis bootdev pxe   10% chassis bootdev disk
#     10% chassis bootparam get 5
#     10% power on              10% power off
# (power on/off of one VM from two loops at once can legitimately get C0h,
# node busy; it is counted, by kind, like any other error).
# Every $SAMPLE (10) seconds it prints the bridge's VmRSS (/proc/PID/status)
# with the requests and errors so far; at the end a summary: total requests,
# requests/s, errors by kind, latency per command, RSS min/max/last, and the
# warnings and errors the bridge logged.
#
# Run:    ./scripts/soak.sh                     (10 minutes)
#         DURATION=60s ./scripts/soak.sh
# Env:    DURATION=10m   (s, m or h suffix, or plain seconds)
#         VMS=100 WORKERS=20 SAMPLE=10
#         CALL_TIMEOUT=15  seconds allowed to one ipmitool process
#         BRIDGE=          a prebuilt bridge binary (default: go build)
#         KEEP=0           1 keeps the temporary directory (logs)
# Needs ipmitool and Go. Everything listens on and talks to 127.0.0.1 only.
# Exit status 0 when the bridge lived through the run, 1 otherwise.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_TAG=soak
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"

DURATION=${DURATION:-10m}
VMS=${VMS:-100}
WORKERS=${WORKERS:-20}
SAMPLE=${SAMPLE:-10}
CALL_TIMEOUT=${CALL_TIMEOUT:-15}
BRIDGE=${BRIDGE:-}
KEEP=${KEEP:-0}

HOST=127.0.0.1
IPMI_USER='admin'
IPMI_PASS='password'
OPS=(
	"power status" "power status" "power status"
	"chassis status" "chassis status"
	"chassis bootdev pxe"
	"chassis bootdev disk"
	"chassis bootparam get 5"
	"power on"
	"power off"
)

case $DURATION in
*h) DURATION_S=${DURATION%h} MULT=3600 ;;
*m) DURATION_S=${DURATION%m} MULT=60 ;;
*s) DURATION_S=${DURATION%s} MULT=1 ;;
*) DURATION_S=$DURATION MULT=1 ;;
esac
check_int DURATION "$DURATION_S" 100000
DURATION_S=$((DURATION_S * MULT))
check_int DURATION "$DURATION_S" 604800
check_int VMS "$VMS" 1000
check_int WORKERS "$WORKERS" 200
check_int SAMPLE "$SAMPLE" 3600
check_int CALL_TIMEOUT "$CALL_TIMEOUT" 600
command -v ipmitool >/dev/null || die "ipmitool is needed (apt-get install ipmitool)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ipmi-soak.XXXXXX")
cd "$WORK" # nothing is written anywhere else
BRIDGE_PID=
SLEEP_PID=
WORKER_PIDS=()

stop_workers() {
	local p pids=()
	touch "$WORK/stop"
	for p in "${WORKER_PIDS[@]}"; do
		mapfile -t -O "${#pids[@]}" pids < <(tree_pids "$p")
	done
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	sleep 0.5
	for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
	for p in "${WORKER_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	WORKER_PIDS=()
}

stop_bridge() {
	stop_pid "$BRIDGE_PID" 25
	BRIDGE_PID=
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $SLEEP_PID ]]; then kill "$SLEEP_PID" 2>/dev/null || true; fi
	stop_workers
	stop_bridge
	finish_work "$rc"
}
on_exit cleanup

rss_kb() { # pid
	awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0
}

# user+system CPU seconds the process has used so far
cpu_s() { # pid
	awk -v tck="$(getconf CLK_TCK)" '{sub(/^.*\) /, ""); printf "%.1f", ($12 + $13) / tck}' "/proc/$1/stat" 2>/dev/null || echo 0
}

load1() { cut -d' ' -f1 /proc/loadavg; }

mib() { awk -v k="$1" 'BEGIN {printf "%.1f MiB", k / 1024}'; }

# microseconds since the epoch, without a fork
now_us() {
	local t=${EPOCHREALTIME//[!0-9]/}
	echo "$t"
}

# one client loop: random BMC, random command, one ipmitool process each,
# until DEADLINE (or the stop file); one line per request in its log:
# command <TAB> exit status <TAB> milliseconds <TAB> kind ("ok" or the error)
# <TAB> 1 when ipmitool had to retransmit ("no response from ...") else 0
worker() { # id
	local id=$1 i op port rc t0 t1 kind args retried
	local out=$WORK/w$id.out err=$WORK/w$id.err wlog=$WORK/w$id.log
	RANDOM=$(((BASHPID * 31 + id * 7919) % 32768))
	: >"$wlog"
	for ((i = 0; i < MAX_CALLS; i++)); do
		((EPOCHSECONDS < DEADLINE)) || break
		[[ ! -e $WORK/stop ]] || break
		op=${OPS[RANDOM % ${#OPS[@]}]}
		port=${PORTS[RANDOM % ${#PORTS[@]}]}
		read -ra args <<<"$op"
		rc=0
		t0=$(now_us)
		timeout -k 2 "$CALL_TIMEOUT" ipmitool -I lanplus -H "$HOST" -p "$port" -U "$IPMI_USER" -P "$IPMI_PASS" \
			"${args[@]}" >"$out" 2>"$err" </dev/null || rc=$?
		t1=$(now_us)
		if ((rc == 0)); then
			kind=ok
		elif ((rc == 124 || rc == 137)); then
			kind="timeout (${CALL_TIMEOUT}s)"
		else
			kind=$(grep -v '^[[:space:]]*$' "$err" | tail -n 1 || true)
			kind=${kind//$'\t'/ }
			kind="${kind:0:100}"
			[[ -n $kind ]] || kind="exit status $rc, no message"
		fi
		retried=0
		if grep -q 'no response from' "$err"; then retried=1; fi
		printf '%s\t%d\t%d\t%s\t%d\n' "$op" "$rc" $(((t1 - t0) / 1000)) "$kind" "$retried" >>"$wlog"
	done
}

# ---------------------------------------------------------------- start

if [[ -z $BRIDGE ]]; then
	log "go build ./cmd/ipmi-vmware-bridge"
	(cd "$ROOT" && timeout 900 go build -o "$WORK/ipmi-vmware-bridge" ./cmd/ipmi-vmware-bridge) >"$WORK/build.log" 2>&1 ||
		die "go build failed: $(tail -n 5 "$WORK/build.log")"
	BRIDGE=$WORK/ipmi-vmware-bridge
fi

log "bridge: serve --vms $VMS on $HOST"
"$BRIDGE" serve --vms "$VMS" --listen "$HOST" --base-port 0 --sim-addr "$HOST:0" \
	--socket "$WORK/api.sock" --metrics-address - --redfish-address - --console-address - \
	</dev/null >"$WORK/bridge.out" 2>"$WORK/bridge.err" &
BRIDGE_PID=$!

n=0
for ((i = 0; i < 900; i++)); do
	n=$(grep -cE "udp://127\.0\.0\.1:[0-9]+" "$WORK/bridge.out" 2>/dev/null || true)
	((${n:-0} >= VMS)) && break
	kill -0 "$BRIDGE_PID" 2>/dev/null || break
	sleep 0.1
done
((${n:-0} >= VMS)) || die "the bridge did not list $VMS BMCs ($n): $(tail -n 5 "$WORK/bridge.err")"
mapfile -t PORTS < <(grep -oE "udp://127\.0\.0\.1:[0-9]+" "$WORK/bridge.out" | sed 's/.*://')
for port in "${PORTS[0]}" "${PORTS[-1]}"; do
	wait_bmc "$port" "$BRIDGE_PID" || die "BMC $HOST:$port does not answer: $(tail -n 5 "$WORK/bridge.err")"
done
log "bridge pid $BRIDGE_PID serves ${#PORTS[@]} BMCs (ports ${PORTS[0]}...${PORTS[-1]})"

# ---------------------------------------------------------------- run

START=$EPOCHSECONDS
DEADLINE=$((START + DURATION_S))
# a bound on the loops besides the clock: no ipmitool process takes under 1 ms
MAX_CALLS=$((DURATION_S * 1000 + 1000))

rss0=$(rss_kb "$BRIDGE_PID")
cpu0=$(cpu_s "$BRIDGE_PID")
printf '%s\t%s\t%s\n' 0 "$rss0" "$(load1)" >"$WORK/rss.tsv"
log "t=0s rss=$(mib "$rss0"); $WORKERS loops for ${DURATION_S}s"

for ((w = 1; w <= WORKERS; w++)); do
	worker "$w" &
	WORKER_PIDS+=("$!")
done

bridge_died=0
next=$((START + SAMPLE))
for ((s = 0; s < DURATION_S / SAMPLE + 2; s++)); do
	now=$EPOCHSECONDS
	((now < DEADLINE)) || break
	wake=$((next < DEADLINE ? next : DEADLINE))
	if ((wake > now)); then
		sleep $((wake - now)) &
		SLEEP_PID=$!
		wait "$SLEEP_PID" || true # a background sleep: INT and TERM end it at once
		SLEEP_PID=
	fi
	((EPOCHSECONDS < DEADLINE)) || break
	if ! kill -0 "$BRIDGE_PID" 2>/dev/null; then
		bridge_died=1
		log "the bridge exited: $(tail -n 3 "$WORK/bridge.err")"
		break
	fi
	rss=$(rss_kb "$BRIDGE_PID")
	load=$(load1)
	printf '%s\t%s\t%s\n' $((EPOCHSECONDS - START)) "$rss" "$load" >>"$WORK/rss.tsv"
	reqs=$(cat "$WORK"/w*.log 2>/dev/null | wc -l)
	errs=$(cat "$WORK"/w*.log 2>/dev/null | awk -F'\t' '$4 != "ok"' | wc -l)
	log "t=$((EPOCHSECONDS - START))s rss=$(mib "$rss") requests=$reqs errors=$errs load=$load"
	next=$((next + SAMPLE))
done

# the loops stop at the deadline; a call under way ends within CALL_TIMEOUT
for ((i = 0; i < (CALL_TIMEOUT + 5) * 10; i++)); do
	alive=0
	for p in "${WORKER_PIDS[@]}"; do
		if kill -0 "$p" 2>/dev/null; then alive=1; fi
	done
	((alive)) || break
	sleep 0.1
done
stop_workers
elapsed=$((EPOCHSECONDS - START))
cpu1=$cpu0
if kill -0 "$BRIDGE_PID" 2>/dev/null; then
	rss=$(rss_kb "$BRIDGE_PID")
	cpu1=$(cpu_s "$BRIDGE_PID")
	printf '%s\t%s\t%s\n' "$elapsed" "$rss" "$(load1)" >>"$WORK/rss.tsv"
	log "t=${elapsed}s rss=$(mib "$rss") (end)"
else
	bridge_died=1
fi

# ---------------------------------------------------------------- summary

cat "$WORK"/w*.log >"$WORK/all.tsv" 2>/dev/null || true
total=$(wc -l <"$WORK/all.tsv")
errors=$(awk -F'\t' '$4 != "ok"' "$WORK/all.tsv" | wc -l)
warn_lines=$(grep -c 'level=WARN' "$WORK/bridge.err" || true)
error_lines=$(grep -c 'level=ERROR' "$WORK/bridge.err" || true)

echo
echo "## soak summary"
echo
echo "bridge: $VMS BMCs (simulator mode) on $HOST, $WORKERS concurrent ipmitool loops, ${elapsed}s ($DURATION asked), $(nproc) CPUs"
echo "requests: $total in ${elapsed}s ($(awk -v n="$total" -v s="$elapsed" 'BEGIN {printf "%.1f", (s > 0 ? n / s : 0)}') req/s, one ipmitool process each)"
echo "requests that succeeded only after ipmitool retransmitted (\"no response from ...\"): $(awk -F'\t' '$4 == "ok" && $5 == 1' "$WORK/all.tsv" | wc -l)"
echo "errors: $errors ($(awk -v e="$errors" -v n="$total" 'BEGIN {printf "%.2f", (n > 0 ? 100 * e / n : 0)}')%)"
if ((errors > 0)); then
	echo
	echo "errors by kind:"
	awk -F'\t' '$4 != "ok" {n[$4]++; ops[$4] = ops[$4] (index(ops[$4], $1) ? "" : (ops[$4] == "" ? "" : ", ") $1)}
		END {for (k in n) printf "  %7d  %s  [%s]\n", n[k], k, ops[k]}' "$WORK/all.tsv" | sort -rn
fi
echo
echo "per command:"
printf '  %-26s %8s %7s %9s %9s %9s\n' command requests errors "mean ms" "p95 ms" "max ms"
while IFS= read -r op; do
	awk -F'\t' -v op="$op" '$1 == op {print $3}' "$WORK/all.tsv" | sort -n >"$WORK/lat"
	ops_e=$(awk -F'\t' -v op="$op" '$1 == op && $4 != "ok"' "$WORK/all.tsv" | wc -l)
	awk -v op="$op" -v e="$ops_e" '{v[NR] = $1; s += $1}
		END {
			if (NR == 0) exit
			i = int(NR * 0.95); if (i < NR * 0.95) i++; if (i < 1) i = 1
			printf "  %-26s %8d %7d %9.1f %9d %9d\n", op, NR, e, s / NR, v[i], v[NR]
		}' "$WORK/lat"
done < <(printf '%s\n' "${OPS[@]}" | awk '!seen[$0]++')
echo
awk -F'\t' -v s="$SAMPLE" 'NR == 1 {min = max = first = $2} {if ($2 < min) min = $2; if ($2 > max) max = $2; last = $2}
	END {printf "bridge RSS (%d samples, every %ss): start %.1f MiB, min %.1f MiB, max %.1f MiB, last %.1f MiB\n", NR, s, first / 1024, min / 1024, max / 1024, last / 1024}' \
	"$WORK/rss.tsv"
echo "RSS over time (s: MiB): $(awk -F'\t' '{printf "%s%s: %.1f", (NR > 1 ? ", " : ""), $1, $2 / 1024}' "$WORK/rss.tsv")"
awk -v a="$cpu0" -v b="$cpu1" -v t="$elapsed" -v n="$(nproc)" -v w="$WORKERS" 'BEGIN {
	printf "bridge CPU: %.1f s user+system in %d s (%.0f%% of one core); the %d ipmitool loops share the same %d CPUs\n", b - a, t, (t > 0 ? 100 * (b - a) / t : 0), w, n }'
echo "1-minute load average at the samples: $(awk -F'\t' '{printf "%s%s", (NR > 1 ? ", " : ""), $3}' "$WORK/rss.tsv")"
echo "bridge log: $warn_lines WARN, $error_lines ERROR lines"
if ((warn_lines + error_lines > 0)); then
	# grouped with the VM, client, port and timing details blanked out
	grep -E 'level=(WARN|ERROR)' "$WORK/bridge.err" |
		sed -E 's/^time=[^ ]+ //; s/ (vm|client|latency|uuid|source|duration)=("[^"]*"|[^ ]+)//g; s/vm-[0-9]+/vm-N/g; s/127\.0\.0\.1:[0-9]+/127.0.0.1:PORT/g' |
		sort | uniq -c | sort -rn | awk 'NR <= 12 {print "  " $0}'
	first=$(grep -m 1 -E 'level=(WARN|ERROR)' "$WORK/bridge.err" | sed -E 's/^time=([^ ]+) .*/\1/')
	last=$(grep -E 'level=(WARN|ERROR)' "$WORK/bridge.err" | tail -n 1 | sed -E 's/^time=([^ ]+) .*/\1/')
	echo "  (first at $first, last at $last; the run started at $(date -u -d "@$START" +%H:%M:%S) UTC)"
fi
if ((bridge_died)); then
	echo "THE BRIDGE EXITED DURING THE RUN: $(tail -n 3 "$WORK/bridge.err")"
	exit 1
fi
echo "the bridge lived through the run"
