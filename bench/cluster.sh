#!/usr/bin/env bash
# Cluster figures on this machine: single-line reservations per second
# (`loadtest run --scenario reserve`, 64 connections spread evenly over the
# nodes) through a cluster of 1, 2 and 3 nodes (`serve --cluster`, 64
# partitions) on a loopback Redis Cluster of 3 masters and 3 replicas, in
# sync and async durability, next to a single node (`serve --redis-url`,
# one plain Redis) in the same modes; rounds interleaved so the host's
# swings hit every configuration alike. Nothing is pinned: every process
# shares the machine's cores.
# Usage: bash bench/cluster.sh [ROUNDS] [DURATION_S]   (default 2 rounds of 10 s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
DURATION=${2:-10}
for tool in redis-server redis-cli python3 curl; do
    command -v "$tool" >/dev/null || { echo "bench/cluster.sh needs $tool" >&2; exit 1; }
done
cargo build --release --locked -q -p omnistock -p loadtest --bins
export OMNISTOCK_ADMIN_KEY=bench-cluster-admin-key-0123
DIR=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
    for port in 7100 7101 7102 7103 7104 7105; do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

# The Redis Cluster (bus ports 17100-17105).
for port in 7100 7101 7102 7103 7104 7105; do
    mkdir -p "$DIR/$port"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes --cluster-config-file nodes.conf \
        --cluster-node-timeout 1000 --save '' --appendonly no --repl-diskless-sync-delay 0 \
        --dir "$DIR/$port" --daemonize yes >/dev/null
done
for port in 7100 7101 7102 7103 7104 7105; do
    until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done
done
redis-cli --cluster create 127.0.0.1:7100 127.0.0.1:7101 127.0.0.1:7102 127.0.0.1:7103 \
    127.0.0.1:7104 127.0.0.1:7105 --cluster-replicas 1 --cluster-yes >/dev/null

# run_cluster NODES DURABILITY LABEL: starts NODES nodes under a fresh key
# prefix, drives them, stops them; appends "LABEL req/s p50 p99" to results.
run_cluster() {
    local count=$1 durability=$2 label=$3 urls="" node_pids=()
    for n in $(seq 1 "$count"); do
        target/release/omnistock serve --cluster --redis-url redis://127.0.0.1:7100 \
            --listen "127.0.0.1:809$n" --node-id "node-$n" --durability "$durability" \
            --redis-key-prefix "$label" >"$DIR/$label-$n.log" 2>&1 &
        node_pids+=($!); PIDS+=($!)
        urls="${urls:+$urls,}http://127.0.0.1:809$n"
    done
    for n in $(seq 1 "$count"); do
        until curl -sf "127.0.0.1:809$n/readyz" >/dev/null; do sleep 0.1; done
    done
    target/release/loadtest run --url "$urls" --scenario reserve --duration-s "$DURATION" \
        --no-progress --json-out "$DIR/$label.json" >"$DIR/$label.out" 2>&1 \
        || { echo "loadtest failed for $label:" >&2; tail -5 "$DIR/$label.out" >&2; }
    kill -TERM "${node_pids[@]}" 2>/dev/null || true
    wait "${node_pids[@]}" 2>/dev/null || true
    record "$label"
}

# run_single DURABILITY LABEL: a single node on a plain Redis the tool starts.
run_single() {
    target/release/loadtest run --target "omnistock-$1" --scenario reserve --duration-s "$DURATION" \
        --no-progress --out-dir "$DIR/out-$2" --json-out "$DIR/$2.json" >"$DIR/$2.out" 2>&1 \
        || { echo "loadtest failed for $2:" >&2; tail -5 "$DIR/$2.out" >&2; }
    record "$2"
}

record() {
    python3 - "$DIR/$1.json" "$1" >>"$DIR/results" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
phase = report["phases"][-1]
print(f"{sys.argv[2]} {phase['rate_per_s']:.0f} {phase['p50_ms']:.1f} {phase['p99_ms']:.1f} "
      f"{phase['errors']} {'PASSED' if report['passed'] else 'FAILED'}")
EOF
    tail -1 "$DIR/results" >&2
}

for round in $(seq 1 "$ROUNDS"); do
    for durability in sync async; do
        run_single "$durability" "r$round-single-$durability"
        for nodes in 1 2 3; do
            run_cluster "$nodes" "$durability" "r$round-cluster$nodes-$durability"
        done
    done
done
echo "label req/s p50_ms p99_ms errors audit"
cat "$DIR/results"
