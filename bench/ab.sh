#!/usr/bin/env bash
# Interleaved A/B of omnistock binaries next to the no-op server
# (BENCHMARKS.md). Every server runs at once, pinned to core 0 (idle unless
# loaded); wrk on core 1 loads them in turn, SLICE_S seconds each, ROUNDS
# times, so the slow swings of a shared host hit every binary alike. Prints
# each binary's median req/s and the median of its per-slice ratios to the
# no-op, for single-line reservations and one-position reads.
# Needs wrk (apt-get install wrk). Loopback only.
# Usage: bash bench/ab.sh ROUNDS SLICE_S label=BINARY [label=BINARY ...]
#   e.g. bash bench/ab.sh 8 2 old=/tmp/omnistock-old new=target/release/omnistock
# A label starting with "noop" names another no-op build (e.g. other flags).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
[ $# -ge 3 ] || { sed -n 2,12p "$0" >&2; exit 2; }
require bench/ab.sh wrk
cargo build --release --quiet --locked --example noop_server
rounds=$1; slice=$2; shift 2
pids=()
results=$(mktemp); trap 'kill "${pids[@]}" 2>/dev/null || true; rm -f "$results"' EXIT
start_noop target/release/examples/noop_server 18800; pids+=("$started")
labels=(noop); ports=(18800)
port=18801
for pair in "$@"; do
    label=${pair%%=*}; binary=${pair#*=}
    case $label in
        noop*) start_noop "$binary" "$port" ;;
        *) start_engine "$binary" "$port" ;;
    esac
    pids+=("$started"); labels+=("$label"); ports+=("$port"); port=$((port + 1))
done
for i in "${!ports[@]}"; do
    case ${labels[$i]} in
        noop*) wait_until_up "${ports[$i]}" /v1/stock/A/B ;;
        *) wait_until_up "${ports[$i]}" /readyz; stock_hot "${ports[$i]}" ;;
    esac
done
rate() { wrk_rate "$1" "$slice" "$2"; } # url script -> req/s
echo "wrk -t1 -c64, $rounds rounds of ${slice} s slices${pin_server:+, servers on core 0, wrk on core 1}"
for round in $(seq 1 "$rounds"); do
    for i in "${!ports[@]}"; do
        url=http://127.0.0.1:${ports[$i]}
        # The no-op gets the same requests, Authorization header included.
        echo "$round ${labels[$i]} reserve $(rate "$url/v1/reservations" bench/reserve.lua)" >>"$results"
        echo "$round ${labels[$i]} read $(rate "$url/v1/stock/WH-NORD/SKU-00042" bench/read.lua)" >>"$results"
    done
done
python3 - "$results" "${labels[@]}" <<'PY'
import sys, statistics
rows = [line.split() for line in open(sys.argv[1])]
labels = sys.argv[2:]
rate = {(int(r), l, k): float(v) for r, l, k, v in rows}
rounds = sorted({k[0] for k in rate})
for kind in ("reserve", "read"):
    for label in labels:
        runs = [rate[(r, label, kind)] for r in rounds]
        ratios = [rate[(r, label, kind)] / rate[(r, "noop", kind)] for r in rounds]
        print(f"{kind:8s} {label:10s} median {statistics.median(runs):9.0f} req/s   "
              f"vs no-op {100 * statistics.median(ratios):5.1f} %   runs {' '.join(f'{x:.0f}' for x in runs)}")
PY
