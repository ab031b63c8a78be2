#!/usr/bin/env bash
# The per-request CPU budget of the data path (docs/performance.md, "Per-request budget").
#
# Starts the benchmark upstream and meshproxy (the benchmark's plain or realistic config,
# metrics and access log on, one worker pinned to CPU 1), sends closed-loop HTTP/1.1
# keep-alive load from CPU 0 (32 connections), samples the proxy with `perf record` for
# the whole run and prints the budget table: µs per request by part of the code, from the
# proxy's CPU time and the samples' shares. Needs perf (linux-perf) and a release build:
#
#   cargo build --release -p meshproxy -p meshproxy-loadtest
#   scripts/profile-budget.sh [SECONDS] [--realistic]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
bin="$root/target/release/meshproxy"
lt="$root/target/release/meshproxy-loadtest"
command -v perf >/dev/null || { echo "profile-budget: perf not found (apt-get install linux-perf)" >&2; exit 1; }
[ -x "$bin" ] && [ -x "$lt" ] || { echo "profile-budget: build first: cargo build --release -p meshproxy -p meshproxy-loadtest" >&2; exit 1; }

dir=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$dir"' EXIT
mkdir "$dir/config"

wait_for() { # file pattern
  for _ in $(seq 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "profile-budget: timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

taskset -c 0 "$lt" upstream --listen 127.0.0.1:0 >"$dir/upstream.log" 2>&1 &
wait_for "$dir/upstream.log" listening
up=$(grep -o 'listening [0-9.:]*' "$dir/upstream.log" | awk '{print $2}')

kind=plain
[ "${2:-}" = "--realistic" ] && kind=realistic
"$lt" bench-config "$kind" --upstream "$up" >"$dir/config/proxy.yaml"
host=$("$lt" bench-config "$kind" --host | sed -n 1p)
header=$("$lt" bench-config "$kind" --host | sed -n 2p)
header_args=()
[ -n "$header" ] && header_args=(-H "$header")

# As the benchmark's realistic target: metrics and access log on, the log to /dev/null.
taskset -c 1 "$bin" run -c "$dir/config/proxy.yaml" --workers 1 --access-log on --metrics on \
  >/dev/null 2>"$dir/proxy.log" &
px=$!
wait_for "$dir/proxy.log" "serving"
addr=$(grep -o 'listener=outbound address=127.0.0.1:[0-9]*' "$dir/proxy.log" | grep -o '127.0.0.1:[0-9]*')

ticks() { awk '{print $14 + $15}' "/proc/$px/stat"; }
hz=$(getconf CLK_TCK)
perf record -F 4999 -p "$px" -o "$dir/perf.data" -- sleep "$secs" >/dev/null 2>&1 &
perf_pid=$!
t0=$(ticks)
taskset -c 0 "$lt" load "http://$addr/" --host "$host" "${header_args[@]}" -c 32 -d "${secs}s" -q --json "$dir/load.json" >/dev/null
t1=$(ticks)
wait "$perf_pid" || true
requests=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['requests'])" "$dir/load.json")
cpu=$(python3 -c "print(($t1 - $t0) / $hz)")
echo "requests: $requests in ${secs}s; proxy CPU: ${cpu}s"
python3 "$root/scripts/budget.py" "$dir/perf.data" "$requests" "$cpu"
