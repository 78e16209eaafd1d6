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
source bench/lib.sh
require bench/steady_ab.sh wrk
[ $# -ge 5 ] || { echo "usage: bash bench/steady_ab.sh ROUNDS WARM_S SLICE_S label=BINARY label=BINARY ..." >&2; exit 2; }
rounds=$1; warm=$2; slice=$3; shift 3
labels=(); ports=(); pids=()
results=$(mktemp)
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -f "$results"' EXIT
port=18970
for spec in "$@"; do
    label=${spec%%=*}; binary=${spec#*=}
    start_engine "$binary" "$port"
    pids+=("$started"); labels+=("$label"); ports+=("$port"); port=$((port + 1))
done
for i in "${!ports[@]}"; do
    wait_until_up "${ports[$i]}" /readyz
    stock_hot "${ports[$i]}"
    echo "warm ${labels[$i]} $(reserve_rate "${ports[$i]}" "$warm") req/s"
done
for round in $(seq "$rounds"); do
    line="round $round"
    for i in "${!ports[@]}"; do line="$line ${labels[$i]} $(reserve_rate "${ports[$i]}" "$slice")"; done
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
