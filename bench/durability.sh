#!/usr/bin/env bash
# Reservations/s over HTTP with no store, the Redis write-behind in async
# mode, and in sync mode (group commit), same machine, same run
# (BENCHMARKS.md). Starts its own redis-server (no persistence: this
# measures omnistock's write path, not Redis's fsync) on a free port.
# Needs wrk and redis-server. Loopback only.
# Usage: bash bench/durability.sh [seconds] [connections] [script]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-64}
script=${3:-bench/reserve_spread.lua}
source bench/lib.sh
require bench/durability.sh wrk redis-server curl
cargo build --release --quiet --locked --bin omnistock
key=$BENCH_KEY
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "${dir:-}"' EXIT

run() { # label, extra serve args...
    local label=$1; shift
    local port; port=$(free_port)
    OMNISTOCK_ADMIN_KEY=$key target/release/omnistock serve --demo --listen "127.0.0.1:$port" \
        --rate-limit-per-second 0 "$@" 2>/dev/null &
    local engine=$!
    pids+=("$engine")
    wait_until_up "$port" /readyz
    local out
    out=$(wrk -t1 -c"$connections" -d"${seconds}s" --latency -s "$script" "http://127.0.0.1:$port/v1/reservations")
    if grep -q "Non-2xx" <<<"$out"; then echo "$label: unexpected errors: $(grep Non-2xx <<<"$out")" >&2; fi
    local ready; ready=$(curl -s "http://127.0.0.1:$port/readyz")
    printf '%-16s %10s req/s   p50 %8s   p99 %8s   readyz: %s\n' "$label" \
        "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" "$(awk '$1=="50%" {print $2}' <<<"$out")" \
        "$(awk '$1=="99%" {print $2}' <<<"$out")" "$(cut -c1-160 <<<"$ready")"
    kill "$engine"; wait "$engine" 2>/dev/null || true
}

dir=$(mktemp -d)
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" >/dev/null &
pids+=("$!")
until redis-cli -p "$redis_port" ping >/dev/null 2>&1; do sleep 0.05; done
echo "wrk -t1 -c$connections -d${seconds}s -s $script; $(nproc) cores; redis $(redis-server --version | awk '{print $3}')"
run "memory"
redis-cli -p "$redis_port" flushall >/dev/null
run "redis async" --redis-url "redis://127.0.0.1:$redis_port" --durability async
redis-cli -p "$redis_port" flushall >/dev/null
run "redis sync" --redis-url "redis://127.0.0.1:$redis_port" --durability sync
