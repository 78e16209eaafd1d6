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
source bench/redis_cluster.sh

# run_cluster NODES DURABILITY LABEL: starts NODES nodes under a fresh key
# prefix, drives them, stops them; appends "LABEL req/s p50 p99" to results.
run_cluster() {
    local count=$1 durability=$2 label=$3
    start_nodes "$count" "$label" --durability "$durability"
    target/release/loadtest run --url "$URLS" --scenario reserve --duration-s "$DURATION" \
        --no-progress --json-out "$DIR/$label.json" >"$DIR/$label.out" 2>&1 \
        || { echo "loadtest failed for $label:" >&2; tail -5 "$DIR/$label.out" >&2; }
    stop_nodes
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
