#!/usr/bin/env bash
# Measures the bridge at estate size: one process bridging two simulated
# vCenters (scripts/bench/vcsim, each its own process, VMS VMs each,
# default 5000: 10,000 in all), every VM enrolled by a rule (enroll:
# name "*", one port each from a pool per vCenter). Prints the time from
# start to every BMC serving, the bridge's RSS, and what a new VM costs:
# the time from its creation in vCenter to its BMC serving, split into the
# simulator delivering the new VM to the bridge's watch (govmomi's
# simulator re-reads every object of a filter for every update it sends,
# so this grows with its VMs; a real vCenter sends the change alone) and
# the bridge enrolling it, and the bridge's CPU (utime+stime from /proc)
# in that time above its idle rate.
# Usage: scripts/estate.sh          VMS=500 scripts/estate.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VMS="${VMS:-5000}"
LAB_PORT="${LAB_PORT:-20000}"
PROD_PORT="${PROD_PORT:-30000}"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

now_ms() { echo $(($(date +%s%N) / 1000000)); }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tck=$(getconf CLK_TCK)

go build -o "$work/bridge" ./cmd/ipmi-vmware-bridge
go build -o "$work/vcsim" ./scripts/bench/vcsim
go build -o "$work/vmclone" ./scripts/bench/vmclone

# two vCenters; each vcsim writes a configuration naming its URL and CA
for vc in lab prod; do
  "$work/vcsim" -vms "$VMS" -config "$work/$vc.yaml" >"$work/$vc.out" 2>&1 &
  pids+=($!)
done
for vc in lab prod; do
  until grep -q "^vcsim:" "$work/$vc.out" 2>/dev/null; do
    kill -0 "${pids[0]}" "${pids[1]}" 2>/dev/null || { cat "$work"/*.out >&2; exit 1; }
    sleep 0.5
  done
done
field() { sed -n "s/^  $2: //p" "$work/$1.yaml" | head -n 1; }
{
  echo "vcenters:"
  for vc in lab prod; do
    printf '  - name: %s\n    url: %s\n    username: vcsim\n    password: vcsim\n    caFile: %s\n' "$vc" "$(field "$vc" url)" "$(field "$vc" caFile)"
  done
  printf 'stateDir: %s\nmetricsAddress: ""\nredfish:\n  address: 127.0.0.1:0\nenroll:\n' "$work/state"
  printf '  - vcenter: lab\n    name: "*"\n    addresses: [127.0.0.1]\n    ports: %d-%d\n    password: password\n' "$LAB_PORT" $((LAB_PORT + VMS + 9))
  printf '  - vcenter: prod\n    name: "*"\n    addresses: [127.0.0.1]\n    ports: %d-%d\n    password: password\n' "$PROD_PORT" $((PROD_PORT + VMS + 9))
} >"$work/estate.yaml"

running() { "$work/bridge" bmc list --json --socket "$work/api.sock" 2>/dev/null | grep -o '"status": *"running"' | wc -l; }
start=$(now_ms)
"$work/bridge" serve --config "$work/estate.yaml" --socket "$work/api.sock" --console-address - >"$work/bridge.out" 2>"$work/bridge.err" &
bridge=$!
pids+=("$bridge")
until (($(running) >= 2 * VMS)); do
  kill -0 "$bridge" 2>/dev/null || { tail -5 "$work/bridge.err" >&2; exit 1; }
  if (($(now_ms) - start > 900000)); then echo "not all serving after 900 s" >&2; exit 1; fi
  sleep 2
done
ready_ms=$(($(now_ms) - start))
sleep 5
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$bridge/status")

# the bridge's idle rate, then a new VM in lab, watched until its BMC serves
c0=$(cpu_ticks "$bridge"); t0=$(now_ms); sleep 10; c1=$(cpu_ticks "$bridge"); t1=$(now_ms)
idle_ms_per_s=$(awk -v c="$((c1 - c0))" -v t="$((t1 - t0))" -v k="$tck" 'BEGIN { printf "%.1f", c * 1000 / k / (t / 1000) }')
c0=$(cpu_ticks "$bridge"); t0=$(now_ms)
"$work/vmclone" -url "$(field lab url)" -ca "$(field lab caFile)" -from skinner-master-0 -name estate-new >/dev/null
# two steps: the simulator delivering the new VM to the bridge's watch
# (vms lists it), then the bridge enrolling it and its BMC serving
until "$work/bridge" vms --filter estate-new --json --socket "$work/api.sock" 2>/dev/null | grep -q '"name"'; do
  if (($(now_ms) - t0 > 120000)); then echo "the new VM never reached the bridge's inventory within 120 s" >&2; exit 1; fi
  sleep 0.25 # each vms call reads every BMC: polling fast would be the CPU measured
done
seen=$(now_ms)
until "$work/bridge" bmc show estate-new --json --socket "$work/api.sock" 2>/dev/null | grep -q '"status": *"running"'; do
  if (($(now_ms) - seen > 60000)); then echo "the new VM got no BMC within 60 s of being seen" >&2; exit 1; fi
  sleep 0.02
done
t1=$(now_ms); c1=$(cpu_ticks "$bridge")
enrol_ms=$((t1 - t0))
seen_ms=$((seen - t0))
serve_ms=$((t1 - seen))
enrol_cpu_ms=$(awk -v c="$((c1 - c0))" -v k="$tck" -v i="$idle_ms_per_s" -v t="$enrol_ms" 'BEGIN { v = c * 1000 / k - i * t / 1000; if (v < 0) v = 0; printf "%.0f", v }')

printf '| VMs (2 vCenters) | start to all enrolled and serving | bridge RSS | RSS per BMC | idle CPU | new VM to its BMC serving | of which: the simulator delivering it | the bridge seeing it to its BMC serving | CPU for it above idle |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
printf '| %d | %.1f s | %d MiB | %d KiB | %s ms/s | %d ms | %d ms | %d ms | %s ms |\n' $((2 * VMS)) "$(awk -v ms="$ready_ms" 'BEGIN{print ms/1000}')" \
  $((rss_kb / 1024)) $((rss_kb / (2 * VMS))) "$idle_ms_per_s" "$enrol_ms" "$seen_ms" "$serve_ms" "$enrol_cpu_ms"
