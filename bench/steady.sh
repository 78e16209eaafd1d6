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
command -v wrk >/dev/null || { echo "bench/steady.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
warm=${1:-65}; measure=${2:-10}
shift $(( $# >= 2 ? 2 : $# ))
[ $# -gt 0 ] || set -- current=target/release/omnistock
pin_server=""; pin_client=""
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then pin_server="taskset -c 0"; pin_client="taskset -c 1"; fi
cargo build --release --quiet --locked --bin omnistock --example noop_server
key=bench-admin-key-0123456789
noop_port=18990; engine_port=18991
$pin_server target/release/examples/noop_server "127.0.0.1:$noop_port" >/dev/null &
noop=$!
engine=""
trap 'kill $noop $engine 2>/dev/null || true' EXIT
until curl -fs -o /dev/null "http://127.0.0.1:$noop_port/v1/stock/A/B"; do sleep 0.1; done
rate() { # port seconds -> req/s
    $pin_client wrk -t1 -c64 -d"$2s" -s bench/reserve.lua "http://127.0.0.1:$1/v1/reservations" |
        awk '/Requests\/sec/ {print $2}'
}
echo "wrk -t1 -c64, ${warm} s warm-up then ${measure} s measured${pin_server:+, servers on core 0, wrk on core 1}"
for round in 1 2; do
    for pair in "$@"; do
        label=${pair%%=*}; binary=${pair#*=}
        OMNISTOCK_ADMIN_KEY=$key $pin_server "$binary" serve --demo --listen "127.0.0.1:$engine_port" \
            --rate-limit-per-second 0 2>/dev/null &
        engine=$!
        until curl -fs -o /dev/null "http://127.0.0.1:$engine_port/readyz"; do sleep 0.1; done
        curl -fs -o /dev/null -X PUT -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
            -d '{"on_hand": 4000000000}' "http://127.0.0.1:$engine_port/v1/stock/WH-NORD/HOT"
        rate $engine_port "$warm" >/dev/null
        omni=$(rate $engine_port "$measure")
        noop_rate=$(rate $noop_port "$measure")
        rss_mb=$(( $(ps -o rss= -p "$engine") / 1024 ))
        kill "$engine"; wait "$engine" 2>/dev/null || true; engine=""
        awk -v r="$round" -v l="$label" -v a="$omni" -v b="$noop_rate" -v m="$rss_mb" \
            'BEGIN { printf "round %s %-10s %8.0f req/s   no-op %8.0f   %5.1f %%   rss %d MB\n", r, l, a, b, 100 * a / b, m }'
    done
done
