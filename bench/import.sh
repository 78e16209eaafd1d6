#!/usr/bin/env bash
# Reservation latency with and without a concurrent 1,000,000-row NDJSON
# import (BENCHMARKS.md). Needs wrk and curl. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-1000000}
source bench/lib.sh
require bench/import.sh wrk curl
cargo build --release --quiet --locked --bin omnistock
key=$BENCH_KEY
OMNISTOCK_ADMIN_KEY=$key target/release/omnistock serve --demo --listen 127.0.0.1:18080 --rate-limit-per-second 0 2>/dev/null &
engine=$!
file=$(mktemp)
trap 'kill $engine 2>/dev/null || true; rm -f "$file"' EXIT
python3 - "$rows" "$file" <<'PY'
import sys
rows, path = int(sys.argv[1]), sys.argv[2]
stores = ["PAR-01", "PAR-02", "LYS-01", "WH-NORD", "WH-SUD"]
with open(path, "w") as f:
    for i in range(rows):
        f.write('{"sku":"IMP-%07d","location":"%s","on_hand":%d}\n' % (i // 5, stores[i % 5], i % 50))
PY
wait_until_up 18080 /readyz
stock_hot 18080
echo "reservations alone:"
wrk -t1 -c16 -d8s --latency -s bench/reserve.lua http://127.0.0.1:18080/v1/reservations | grep -E "Requests/sec|50%|99%"
echo "reservations during a $rows-row import:"
start=$(date +%s.%N)
curl -fsS -H "Authorization: Bearer $key" -H 'content-type: application/x-ndjson' --data-binary @"$file" http://127.0.0.1:18080/v1/stock/import > /tmp/import-report.json &
import=$!
wrk -t1 -c16 -d8s --latency -s bench/reserve.lua http://127.0.0.1:18080/v1/reservations | grep -E "Requests/sec|50%|99%"
wait $import
end=$(date +%s.%N)
python3 -c "import json; r=json.load(open('/tmp/import-report.json')); print('import: rows %d applied %d failed %d in %.1f s (%.0f rows/s)' % (r['rows'], r['applied'], r['failed'], $end-$start, r['rows']/($end-$start)))"
