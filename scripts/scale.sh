#!/usr/bin/env bash
# Measures the bridge at scale: one process bridging VMS (default 1000)
# simulated VMs, each with its own IPMI endpoint. Prints the time from
# start to every BMC serving, the process's RSS (the embedded vCenter
# simulator included), and one ipmitool answer from the last BMC.
# Usage: scripts/scale.sh            VMS=2000 BASE_PORT=40000 scripts/scale.sh
set -euo pipefail
cd "$(dirname "$0")/.."

VMS="${VMS:-1000}"
BASE_PORT="${BASE_PORT:-30000}"
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

go build -o "$work/bridge" ./cmd/ipmi-vmware-bridge
start=$(date +%s%N)
"$work/bridge" serve --vms "$VMS" --base-port "$BASE_PORT" --sim-addr 127.0.0.1:0 \
  --socket "$work/api.sock" --metrics-address - --redfish-address - --console-address - >"$work/out" 2>"$work/err" &
pid=$!
until grep -q "To bridge a real vCenter" "$work/out" 2>/dev/null; do
  kill -0 "$pid" 2>/dev/null || { cat "$work/err"; exit 1; }
  if (( ($(date +%s%N) - start) / 1000000000 > 300 )); then echo "not up after 300 s" >&2; exit 1; fi
  sleep 0.1
done
ready_ms=$(( ($(date +%s%N) - start) / 1000000 ))
serving=$(grep -c "udp://" "$work/out")
rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
last=$((BASE_PORT + VMS - 1))
status=$(timeout 10 ipmitool -I lanplus -H 127.0.0.1 -p "$last" -U admin -P password power status 2>&1 || true)
printf '| VMs bridged | BMCs serving | start to all serving | RSS (with the simulator) | RSS per BMC | last BMC says |\n'
printf '|---|---|---|---|---|---|\n'
printf '| %d | %d | %.1f s | %d MiB | %d KiB | %s |\n' "$VMS" "$serving" "$(awk -v ms="$ready_ms" 'BEGIN{print ms/1000}')" $((rss_kb / 1024)) $((rss_kb / VMS)) "$status"
