#!/usr/bin/env bash
# User-space instructions per request (callgrind), omnistock next to the
# no-op server, for single-line reservations and one-position reads.
# Unlike req/s on a shared VM (+-25-50 % run to run), instruction counts
# repeat to within about 1 %, so they show what a code change saves.
# They do not count the kernel, cache misses or waits: confirm a change in
# throughput with bench/http.sh too (BENCHMARKS.md).
# Needs valgrind and wrk (apt-get install valgrind wrk). Loopback only.
# Usage: bash bench/instructions.sh [seconds]
#   CACHE_SIM=1 also simulates the caches (valgrind's model of this CPU's
#   L1 and last level) and prints misses per request: I1mr instruction
#   fetches, D1mr/D1mw data reads/writes missing L1, ILmr/DLmr/DLmw the same
#   at the last level. Still repeatable; it shows what instruction counts
#   cannot (BENCHMARKS.md, tenth session).
# Caveat: under valgrind, SHA-256 (the API key digest) runs its portable code
# (valgrind hides the SHA CPU extensions): about 3,500 instructions per
# request that the native binary does in ~100 ns.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
source bench/lib.sh
require bench/instructions.sh valgrind callgrind_control callgrind_annotate wrk
cargo build --release --quiet --locked --bin omnistock --example noop_server
key=$BENCH_KEY
export OMNISTOCK_ADMIN_KEY=$key
port=18795
out=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

# measure NAME SCRIPT PATH COMMAND... -> "NAME: N requests, I instructions/request"
measure() {
    local name=$1 script=$2 path=$3
    shift 3
    valgrind --tool=callgrind ${CACHE_SIM:+--cache-sim=yes} --callgrind-out-file="$out/$name" "$@" >/dev/null 2>"$out/$name.log" &
    local pid=$!
    # Ready: the engine's /readyz (its demo data loaded), or the no-op answering.
    until curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null ||
        curl -fs -o /dev/null "http://127.0.0.1:$port/v1/stock/A/B" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { cat "$out/$name.log" >&2; exit 1; }
        sleep 0.5
    done
    curl -s -o /dev/null -X PUT -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
        -d '{"on_hand": 4000000000}' "http://127.0.0.1:$port/v1/stock/WH-NORD/HOT" || true
    wrk -t1 -c16 -d3s ${script:+-s "$script"} "http://127.0.0.1:$port$path" >/dev/null # warm-up
    callgrind_control -z "$pid" >/dev/null 2>&1
    local requests
    requests=$(wrk -t1 -c16 -d"${seconds}s" ${script:+-s "$script"} "http://127.0.0.1:$port$path" | awk '/requests in/ {print $1}')
    callgrind_control -d "$pid" >/dev/null 2>&1
    sleep 1
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    # callgrind_annotate: "Events shown: Ir ..." names the columns of the
    # "N (100.0%) ... PROGRAM TOTALS" line; each event is divided by requests.
    callgrind_annotate "$out/$name.1" 2>/dev/null | awk -v name="$name" -v n="$requests" '
        /^Events shown:/ { for (i = 3; i <= NF; i++) event[i - 2] = $i; events = NF - 2 }
        /PROGRAM TOTALS/ {
            line = sprintf("%-28s %8s requests   ", name, n); k = 0
            for (i = 1; i <= NF && k < events; i++) {
                if ($i !~ /^[0-9,]+$/) continue
                gsub(",", "", $i); k++
                if (event[k] == "Ir") line = line sprintf("%8d instructions/request", $i / n)
                else line = line sprintf("  %s %.1f", event[k], $i / n)
            }
            print line
        }'
}

echo "callgrind, wrk -t1 -c16 -d${seconds}s after a 3 s warm-up"
measure "noop POST reservation" bench/reserve.lua /v1/reservations target/release/examples/noop_server "127.0.0.1:$port"
measure "omnistock POST reservation" bench/reserve.lua /v1/reservations \
    target/release/omnistock serve --demo --listen "127.0.0.1:$port" --rate-limit-per-second 0
measure "noop GET position" bench/read.lua /v1/stock/WH-NORD/SKU-00042 target/release/examples/noop_server "127.0.0.1:$port"
measure "omnistock GET position" bench/read.lua /v1/stock/WH-NORD/SKU-00042 \
    target/release/omnistock serve --demo --listen "127.0.0.1:$port" --rate-limit-per-second 0
