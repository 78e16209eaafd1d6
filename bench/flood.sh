#!/usr/bin/env bash
# Per-key isolation (RELIABILITY.md, abuse resistance): the latency of a
# well-behaved client (loadtest, open loop, storefront reads under its
# key's rate limit) alone, then while another key floods the engine with
# reservations far beyond its own limit (wrk, closed loop, answered 429).
# Engine pinned to core 0, both clients on core 1. Loopback only.
# Needs wrk. Usage: bash bench/flood.sh [seconds] [good_rate_per_s] [flood_connections] [serve flags...]
# (e.g. `--rate-limited-delay-ms 0` to see the flood without the tarpit)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
rate=${2:-1000}
flood_connections=${3:-64}
shift $(( $# < 3 ? $# : 3 ))
source bench/lib.sh
require bench/flood.sh wrk curl
cargo build --release --quiet --locked -p omnistock -p loadtest --bins
admin=$BENCH_KEY
port=$(free_port)
dir=$(mktemp -d)
# Every key may send twice the good client's rate, with a burst of 50 ms of
# it: the good client stays under it, the flooding key is far over it. (A
# key spends its burst back to back: with a burst of a whole second, the
# flood would take the core for tens of ms at a time, by permission.)
limit=$((rate * 2))
burst=$((limit / 20))
OMNISTOCK_ADMIN_KEY=$admin $pin_server target/release/omnistock serve --listen "127.0.0.1:$port" \
    --rate-limit-per-second "$limit" --rate-limit-burst "$burst" "$@" 2>"$dir/engine.log" &
engine=$!
trap 'kill $engine 2>/dev/null || true; rm -rf "$dir"' EXIT
wait_until_up "$port" /readyz
flood_key=$(curl -fs -X POST -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    -d '{"name": "flooding bot", "scopes": ["reserve"]}' "http://127.0.0.1:$port/v1/keys" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
cat >"$dir/flood.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"channel":"web","lines":[{"sku":"FLOOD","location":"FLOOD","qty":1}],"ttl_seconds":60}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $flood_key"
LUA

good() { # label -> the good client's report line
    $pin_client target/release/loadtest run --url "http://127.0.0.1:$port" --admin-key "$admin" \
        --scenario browse --rate-per-s "$rate" --duration-s "$seconds" --warmup-s 0 --no-progress \
        --out-dir "$dir/$1" 2>&1 | grep -E '^(open|audit|result)'
}
echo "== good client alone: browse at $rate/s"
good alone
echo "== the same while another key floods (wrk -c$flood_connections, reservations)"
$pin_client wrk -t1 -c"$flood_connections" -d"$((seconds + 8))s" -s "$dir/flood.lua" \
    "http://127.0.0.1:$port/v1/reservations" >"$dir/flood.out" &
flood=$!
sleep 1
good flooded
wait $flood || true
echo "flood: $(awk '/Requests\/sec/ {print $2}' "$dir/flood.out") req/s, $(grep -o 'Non-2xx or 3xx responses: [0-9]*' "$dir/flood.out" || echo 'no non-2xx')"
curl -fs -H "Authorization: Bearer $admin" "http://127.0.0.1:$port/metrics" | grep -E '^omnistock_http_requests_total.*status="429"' | head -3 || true
