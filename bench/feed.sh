#!/usr/bin/env bash
# Google feed figures (BENCHMARKS.md): full feed rows/s and the engine's
# resident memory while serving it, for 1,000,000 published positions
# (100,000 SKUs x 10 stores, loaded with one streamed import), then the
# incremental feed after N changes. Needs curl. Loopback only.
# Usage: bash bench/feed.sh [skus]
set -euo pipefail
cd "$(dirname "$0")/.."
skus=${1:-100000}
source bench/lib.sh
require bench/feed.sh curl
cargo build --release --quiet --locked --bin omnistock
key=$BENCH_KEY
port=$(free_port)
base=http://127.0.0.1:$port
OMNISTOCK_ADMIN_KEY=$key target/release/omnistock serve --listen 127.0.0.1:$port --rate-limit-per-second 0 2>/dev/null &
engine=$!
file=$(mktemp)
trap 'kill $engine 2>/dev/null || true; rm -f "$file"' EXIT
wait_until_up "$port" /readyz
auth="Authorization: Bearer $key"
for s in 00 01 02 03 04 05 06 07 08 09; do
  curl -fsS -X PUT -H "$auth" -H 'content-type: application/json' \
    -d '{"kind":"store","name":"S","pickup":{"method":"buy","sla":"same day"}}' $base/v1/locations/ST-$s >/dev/null
done
python3 - "$skus" "$file" <<'PY'
import sys
skus, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(skus):
        for s in range(10):
            f.write('{"sku":"SKU-%07d","location":"ST-%02d","on_hand":%d}\n' % (i, s, (i + s) % 20))
PY
curl -fsS -H "$auth" -H 'content-type: application/x-ndjson' --data-binary @"$file" $base/v1/stock/import >/dev/null
rss() { awk '/VmRSS/ {print $2}' /proc/$engine/status; }
echo "positions: $((skus * 10)), engine RSS before the feed: $(rss) KiB"
for run in 1 2 3; do
  peak=0
  ( while kill -0 $engine 2>/dev/null; do r=$(rss); echo $r; sleep 0.02; done ) > /tmp/feed-rss.txt &
  sampler=$!
  start=$(date +%s.%N)
  rows=$(curl -fsS -H "$auth" -D /tmp/feed-headers.txt $base/v1/feeds/google/local-inventory | tail -n +2 | wc -l)
  end=$(date +%s.%N)
  kill $sampler 2>/dev/null || true
  peak=$(sort -n /tmp/feed-rss.txt | tail -1)
  python3 -c "print('full feed run $run: %d rows in %.3f s = %.0f rows/s, peak RSS %s KiB' % ($rows, $end-$start, $rows/($end-$start), '$peak'))"
done
cursor=$(awk 'tolower($1)=="x-next-cursor:" {print $2}' /tmp/feed-headers.txt | tr -d '\r')
for changes in 100 10000; do
  python3 - "$changes" "$file" <<'PY'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(n):
        f.write('{"sku":"SKU-%07d","location":"ST-%02d","on_hand":%d}\n' % (i * 7 % 100000, i % 10, 21 + i % 5))
PY
  curl -fsS -H "$auth" -H 'content-type: application/x-ndjson' --data-binary @"$file" $base/v1/stock/import >/dev/null
  start=$(date +%s.%N)
  rows=$(curl -fsS -H "$auth" -D /tmp/feed-headers.txt "$base/v1/feeds/google/local-inventory?since=$cursor" | tail -n +2 | wc -l)
  end=$(date +%s.%N)
  python3 -c "print('incremental feed after $changes changes: %d rows in %.1f ms' % ($rows, ($end-$start)*1000))"
  cursor=$(awk 'tolower($1)=="x-next-cursor:" {print $2}' /tmp/feed-headers.txt | tr -d '\r')
done
