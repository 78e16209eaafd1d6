#!/usr/bin/env bash
# Interleaved A/B of omnistock binaries in steady state (BENCHMARKS.md):
# each engine gets WARM_S of continuous single-line reservations (60 s holds
# then expire as fast as they arrive), then ROUNDS rounds of SLICE_S slices,
# one slice per engine per round, so host drift hits every engine alike.
# Prints each round and the median of each engine's ratio to the first one.
# Engines pinned to core 0, wrk to core 1. Needs wrk. Loopback only.
# Usage: bash bench/steady_ab.sh ROUNDS WARM_S SLICE_S label=BINARY label=BINARY ...
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "bench/steady_ab.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
[ $# -ge 5 ] || { echo "usage: bash bench/steady_ab.sh ROUNDS WARM_S SLICE_S label=BINARY label=BINARY ..." >&2; exit 2; }
rounds=$1; warm=$2; slice=$3; shift 3
pin_server=""; pin_client=""
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then pin_server="taskset -c 0"; pin_client="taskset -c 1"; fi
key=bench-admin-key-0123456789
labels=(); ports=(); pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
port=18970
for spec in "$@"; do
    label=${spec%%=*}; binary=${spec#*=}
    OMNISTOCK_ADMIN_KEY=$key $pin_server "$binary" serve --demo --listen "127.0.0.1:$port" \
        --rate-limit-per-second 0 2>/dev/null &
    pids+=($!); labels+=("$label"); ports+=("$port"); port=$((port + 1))
done
rate() { # port seconds -> req/s
    $pin_client wrk -t1 -c64 -d"$2s" -s bench/reserve.lua "http://127.0.0.1:$1/v1/reservations" |
        awk '/Requests\/sec/ {print $2}'
}
for i in "${!ports[@]}"; do
    until curl -fs -o /dev/null "http://127.0.0.1:${ports[$i]}/healthz"; do sleep 0.1; done
    curl -fs -o /dev/null -X PUT -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
        -d '{"on_hand": 4000000000}' "http://127.0.0.1:${ports[$i]}/v1/stock/WH-NORD/HOT"
    echo "warm ${labels[$i]} $(rate "${ports[$i]}" "$warm") req/s"
done
results=$(mktemp)
for round in $(seq "$rounds"); do
    line="round $round"
    for i in "${!ports[@]}"; do line="$line ${labels[$i]} $(rate "${ports[$i]}" "$slice")"; done
    echo "$line" | tee -a "$results"
done
python3 - "$results" <<'PY'
import statistics, sys
rows = [line.split()[2:] for line in open(sys.argv[1])]
labels = rows[0][0::2]
for j, label in enumerate(labels[1:], start=1):
    ratios = [float(r[2 * j + 1]) / float(r[1]) for r in rows]
    print(f"{label} / {labels[0]}: median {statistics.median(ratios):.3f}, "
          f"range {min(ratios):.3f}-{max(ratios):.3f} over {len(ratios)} rounds")
PY
rm -f "$results"
