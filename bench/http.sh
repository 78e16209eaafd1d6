#!/usr/bin/env bash
# HTTP throughput of omnistock next to a no-op axum handler, same machine,
# same run (BENCHMARKS.md). Needs wrk (apt-get install wrk). Loopback only.
# Usage: bash bench/http.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-64}
command -v wrk >/dev/null || { echo "bench/http.sh needs wrk (apt-get install wrk)" >&2; exit 1; }
cargo build --release --quiet --locked --bin omnistock --example noop_server

key=bench-admin-key-0123456789
OMNISTOCK_ADMIN_KEY=$key target/release/omnistock serve --demo --listen 127.0.0.1:18080 --rate-limit-per-second 0 2>/dev/null &
engine=$!
target/release/examples/noop_server 127.0.0.1:18090 >/dev/null &
noop=$!
trap 'kill $engine $noop 2>/dev/null || true' EXIT
sleep 2
# Enough stock that every reservation in the run is granted.
python3 - <<PY
import json, urllib.request
req = urllib.request.Request("http://127.0.0.1:18080/v1/stock/WH-NORD/HOT", data=json.dumps({"on_hand": 4000000000}).encode(), method="PUT",
                             headers={"Authorization": "Bearer $key", "Content-Type": "application/json"})
urllib.request.urlopen(req).read()
PY

run() { # name url script
    local out
    out=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency ${3:+-s "$3"} "$2")
    printf '%-28s %12s req/s   p50 %8s   p99 %8s\n' "$1" "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" "$(awk '$1=="50%" {print $2}' <<<"$out")" "$(awk '$1=="99%" {print $2}' <<<"$out")"
    if grep -q "Non-2xx" <<<"$out"; then grep "Non-2xx" <<<"$out"; fi
}
echo "wrk -t1 -c$connections -d${seconds}s, $(nproc) cores shared by server and wrk"
run "noop GET position" "http://127.0.0.1:18090/v1/stock/WH-NORD/SKU-00042"
run "omnistock GET position" "http://127.0.0.1:18080/v1/stock/WH-NORD/SKU-00042" bench/read.lua
run "noop POST reservation" "http://127.0.0.1:18090/v1/reservations" bench/reserve.lua
run "omnistock POST reservation" "http://127.0.0.1:18080/v1/reservations" bench/reserve.lua
