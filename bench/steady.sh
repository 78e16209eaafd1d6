#!/usr/bin/env bash
# Single-line reservations in steady state (BENCHMARKS.md): the engine under
# continuous load long enough that its 60 s holds expire as fast as new ones
# arrive (about 2 M live holds at 35k/s), then measured next to the no-op
# measured right after it. Short runs (bench/http.sh, bench/ab.sh) measure
# a young ledger: nothing expires yet and the working set is small.
# Servers pinned to core 0, wrk to core 1. Needs wrk. Loopback only.
# Usage: bash bench/steady.sh [WARM_S] [MEASURE_S] [label=BINARY ...]
#   default: 65 10 current=target/release/omnistock; two rounds each.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
require bench/steady.sh wrk
warm=${1:-65}; measure=${2:-10}
shift $(( $# >= 2 ? 2 : $# ))
[ $# -gt 0 ] || set -- current=target/release/omnistock
cargo build --release --quiet --locked --bin omnistock --example noop_server
noop_port=18990; engine_port=18991
start_noop target/release/examples/noop_server "$noop_port"; noop=$started
engine=""
trap 'kill $noop $engine 2>/dev/null || true' EXIT
wait_until_up "$noop_port" /v1/stock/A/B
echo "wrk -t1 -c64, ${warm} s warm-up then ${measure} s measured${pin_server:+, servers on core 0, wrk on core 1}"
for round in 1 2; do
    for pair in "$@"; do
        label=${pair%%=*}; binary=${pair#*=}
        start_engine "$binary" "$engine_port"; engine=$started
        wait_until_up "$engine_port" /readyz
        stock_hot "$engine_port"
        reserve_rate $engine_port "$warm" >/dev/null
        omni=$(reserve_rate $engine_port "$measure")
        noop_rate=$(reserve_rate $noop_port "$measure")
        rss=$(rss_mb "$engine")
        kill "$engine"; wait "$engine" 2>/dev/null || true; engine=""
        awk -v r="$round" -v l="$label" -v a="$omni" -v b="$noop_rate" -v m="$rss" \
            'BEGIN { printf "round %s %-10s %8.0f req/s   no-op %8.0f   %5.1f %%   rss %d MB\n", r, l, a, b, 100 * a / b, m }'
    done
done
