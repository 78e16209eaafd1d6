#!/usr/bin/env bash
# Single-line reservations in steady state, paired slice by slice with the
# no-op (BENCHMARKS.md, eleventh session). steady.sh restarts the engine for
# every round and so yields one ratio per 100 s; the host's swings between
# rounds then dominate. Here one engine is warmed up once (WARM_S of
# continuous reservations, 60 s holds) and wrk then alternates, SLICE_S
# seconds each, between the engine and the no-op, PAIRS times. Each pair
# gives one ratio from two slices taken back to back.
#
# Steady state holds during the pairs: with 2 x SLICE_S dividing the 60 s
# hold time, the holds that expire during an engine slice are those granted
# during the engine slice 60 s before, so every engine slice sweeps as many
# holds as it grants, as under continuous load. Live holds and the engine's
# RSS are printed after the warm-up and at the end.
# Servers pinned to core 0, wrk to core 1. Needs wrk. Loopback only.
# Usage: bash bench/steady_paired.sh [WARM_S] [SLICE_S] [PAIRS] [BINARY]
#   default: 65 10 30 target/release/omnistock (about 11.5 min)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
require bench/steady_paired.sh wrk
warm=${1:-65}; slice=${2:-10}; pairs=${3:-30}; binary=${4:-target/release/omnistock}
(( 60 % (2 * slice) == 0 )) || { echo "2 x SLICE_S must divide the 60 s hold time" >&2; exit 2; }
cargo build --release --quiet --locked --bin omnistock --example noop_server
noop_port=18992; engine_port=18993
results=$(mktemp)
start_noop target/release/examples/noop_server "$noop_port"; noop=$started
start_engine "$binary" "$engine_port"; engine=$started
trap 'kill $noop $engine 2>/dev/null || true; rm -f "$results"' EXIT
wait_until_up "$noop_port" /v1/stock/A/B
wait_until_up "$engine_port" /readyz
stock_hot "$engine_port"
held() { # units held on the hot position right now, and the engine's RSS
    local reserved
    reserved=$(curl -fs -H "Authorization: Bearer $BENCH_KEY" "http://127.0.0.1:$engine_port/v1/stock/WH-NORD/HOT" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["reserved"])')
    echo "held $reserved, rss $(rss_mb "$engine") MB"
}
echo "wrk -t1 -c64, ${warm} s warm-up, then $pairs pairs of ${slice} s slices (engine, no-op)${pin_server:+, servers on core 0, wrk on core 1}"
reserve_rate "$engine_port" "$warm" >/dev/null
echo "after warm-up: $(held)"
for _ in $(seq 1 "$pairs"); do
    echo "$(reserve_rate "$engine_port" "$slice") $(reserve_rate "$noop_port" "$slice")" >>"$results"
done
echo "at the end:    $(held)"
python3 - "$results" <<'PY'
import random, statistics, sys
pairs = [tuple(map(float, line.split())) for line in open(sys.argv[1])]
ratios = [100 * engine / noop for engine, noop in pairs]
print("pair ratios %:", " ".join(f"{r:.1f}" for r in ratios))
print(f"engine median {statistics.median(e for e, _ in pairs):.0f} req/s, "
      f"no-op median {statistics.median(n for _, n in pairs):.0f} req/s")
random.seed(1)
medians = sorted(statistics.median(random.choices(ratios, k=len(ratios))) for _ in range(10000))
print(f"median ratio {statistics.median(ratios):.1f} %, "
      f"95 % bootstrap interval {medians[250]:.1f}-{medians[9749]:.1f}")
PY
