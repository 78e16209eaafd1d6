#!/usr/bin/env bash
# HTTP throughput of omnistock next to a no-op axum handler, same machine,
# same run (BENCHMARKS.md). Needs wrk (apt-get install wrk). Loopback only.
# Usage: bash bench/http.sh [seconds] [connections] [repeats]
# With 2+ cores, servers are pinned to core 0 and wrk to core 1 (taskset), so
# the figures compare server CPU cost rather than scheduler luck; each
# measurement is repeated and the median reported.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
seconds=${1:-10}
connections=${2:-64}
repeats=${3:-3}
require bench/http.sh wrk
cargo build --release --quiet --locked --bin omnistock --example noop_server

start_engine target/release/omnistock 18080; engine=$started
start_noop target/release/examples/noop_server 18090; noop=$started
trap 'kill $engine $noop 2>/dev/null || true' EXIT
wait_until_up 18080 /readyz
wait_until_up 18090 /v1/stock/A/B
stock_hot 18080

once() { # url script -> "req/s p50 p99"
    local out
    out=$($pin_client wrk -t1 -c"$connections" -d"${seconds}s" --latency ${2:+-s "$2"} "$1")
    if grep -q "Non-2xx" <<<"$out"; then echo "unexpected errors: $(grep Non-2xx <<<"$out")" >&2; fi
    echo "$(awk '/Requests\/sec/ {print $2}' <<<"$out") $(awk '$1=="50%" {print $2}' <<<"$out") $(awk '$1=="99%" {print $2}' <<<"$out")"
}
median() { sort -n | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
declare -A results
names=("noop GET position" "omnistock GET position" "noop POST reservation" "omnistock POST reservation")
urls=("http://127.0.0.1:18090/v1/stock/WH-NORD/SKU-00042" "http://127.0.0.1:18080/v1/stock/WH-NORD/SKU-00042" "http://127.0.0.1:18090/v1/reservations" "http://127.0.0.1:18080/v1/reservations")
# The no-op gets the same requests as omnistock, Authorization header included.
scripts=("bench/read.lua" "bench/read.lua" "bench/reserve.lua" "bench/reserve.lua")
echo "wrk -t1 -c$connections -d${seconds}s, median of $repeats interleaved runs${pin_server:+, server on core 0, wrk on core 1}"
for _ in $(seq 1 "$repeats"); do
    for i in 0 1 2 3; do results[$i]+="$(once "${urls[$i]}" "${scripts[$i]}")"$'\n'; done
done
for i in 0 1 2 3; do
    line=$(printf '%s' "${results[$i]}" | median)
    printf '%-28s %12s req/s   p50 %8s   p99 %8s   (runs: %s)\n' "${names[$i]}" $line "$(printf '%s' "${results[$i]}" | awk '{printf "%s ", $1}')"
done
