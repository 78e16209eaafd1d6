#!/usr/bin/env bash
# User-space instructions per request (callgrind), omnistock next to the
# no-op server, for single-line reservations and one-position reads.
# Unlike req/s on a shared VM (+-25-50 % run to run), instruction counts
# repeat to within about 1 %, so they show what a code change saves.
# They do not count the kernel, cache misses or waits: confirm a change in
# throughput with `loadtest paired` too (BENCHMARKS.md). The load is
# `loadtest fixed` (one fixed request in a closed loop, 16 connections).
# Needs valgrind (apt-get install valgrind). Loopback only.
# Usage: bash bench/instructions.sh [seconds]
#   CACHE_SIM=1 also simulates the caches (valgrind's model of this CPU's
#   L1 and last level) and prints misses per request: I1mr instruction
#   fetches, D1mr/D1mw data reads/writes missing L1, ILmr/DLmr/DLmw the same
#   at the last level. Still repeatable; it shows what instruction counts
#   cannot (BENCHMARKS.md).
# Caveat: under valgrind, SHA-256 (the API key digest) runs its portable code
# (valgrind hides the SHA CPU extensions): about 3,500 instructions per
# request that the native binary does in ~100 ns.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
for tool in valgrind callgrind_control callgrind_annotate curl; do
    command -v "$tool" >/dev/null || { echo "bench/instructions.sh needs $tool (apt-get install valgrind curl)" >&2; exit 1; }
done
cargo build --release --quiet --locked -p omnistock -p loadtest --bins --example noop_server
key=bench-admin-key-0123456789
export OMNISTOCK_ADMIN_KEY=$key
port=18795
out=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT

# load REQUEST SECONDS -> loadtest fixed's line ("N requests in S s ...")
load() {
    target/release/loadtest fixed --url "http://127.0.0.1:$port" --request "$1" --connections 16 --duration-s "$2"
}

# measure NAME REQUEST COMMAND... -> "NAME: N requests, I instructions/request"
measure() {
    local name=$1 request=$2
    shift 2
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
    load "$request" 3 >/dev/null || true # warm-up
    callgrind_control -z "$pid" >/dev/null 2>&1
    local requests
    requests=$({ load "$request" "$seconds" || true; } | awk '/requests in/ {print $1}')
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

echo "callgrind, loadtest fixed --connections 16 --duration-s $seconds after a 3 s warm-up"
measure "noop POST reservation" reserve target/release/examples/noop_server "127.0.0.1:$port"
measure "omnistock POST reservation" reserve \
    target/release/omnistock serve --demo --listen "127.0.0.1:$port" --rate-limit-per-second 0
measure "noop GET position" read target/release/examples/noop_server "127.0.0.1:$port"
measure "omnistock GET position" read \
    target/release/omnistock serve --demo --listen "127.0.0.1:$port" --rate-limit-per-second 0
