#!/usr/bin/env bash
# Write-behind figures on this machine: full rewrite and incremental flush
# throughput, and recovery rate, against a redis-server started here on a
# free port (no persistence, so Redis's own fsync is not measured).
# Usage: bash bench/store.sh [SKUS] [LOCATIONS]   (default 100000 x 10 = 1M positions)
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in redis-server redis-cli python3; do
    command -v "$tool" >/dev/null || { echo "bench/store.sh needs $tool (apt-get install redis-server python3)" >&2; exit 1; }
done
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DIR=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$DIR" >/dev/null &
REDIS=$!
trap 'kill $REDIS 2>/dev/null; rm -rf "$DIR"' EXIT
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.05; done
cargo build --release --locked --example store_bench 2>/dev/null; target/release/examples/store_bench "redis://127.0.0.1:$PORT" "${1:-100000}" "${2:-10}"
echo "redis used_memory: $(redis-cli -p "$PORT" info memory | grep '^used_memory_human' | cut -d: -f2)"
redis-cli -p "$PORT" info commandstats | grep -E "hgetall|evalsha|exec" || true
