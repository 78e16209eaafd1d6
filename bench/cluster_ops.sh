#!/usr/bin/env bash
# What operations across partitions cost on this machine, next to a single
# node, in sync durability, 64 connections (`loadtest run`, closed loop):
#   - carts of 1, 3 and 5 lines (`--scenario reserve-batch`, one unit a line
#     on random SKUs): on a single node; through a 3-node cluster of 64
#     partitions, where a cart of 3 or 5 lines spans partitions (coordinated:
#     its decision record, its parts placed at once); and through a 3-node
#     cluster of 1 partition, where every cart is within one partition;
#   - the full Google feed (`--scenario feed`: full and incremental polls of
#     40,000 store rows), by one poller (rows per second of a full feed)
#     and by 64;
#   - fan-out reads (`--scenario browse`: a batch of 20 positions of random
#     SKUs next to single-position reads).
# Rounds interleaved so the host's swings hit every configuration alike;
# nothing is pinned: every process shares the machine's cores.
# Usage: bash bench/cluster_ops.sh [ROUNDS] [DURATION_S] [all|carts]
#   (default 2 rounds of 10 s, every figure; `carts`: the cart rows only)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-2}
DURATION=${2:-10}
WHAT=${3:-all}
source bench/redis_cluster.sh

# drive LABEL SCENARIO [ARGS...]: loadtest against $TARGET_ARGS; records
# every operation's rate and latency.
drive() {
    local label=$1 scenario=$2
    shift 2
    target/release/loadtest run "${TARGET_ARGS[@]}" --scenario "$scenario" "$@" \
        --duration-s "$DURATION" --no-progress --json-out "$DIR/$label.json" \
        >"$DIR/$label.out" 2>&1 \
        || { echo "loadtest failed for $label:" >&2; tail -5 "$DIR/$label.out" >&2; }
    python3 - "$DIR/$label.json" "$label" >>"$DIR/results" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
phase = report["phases"][-1]
for op in phase["ops"]:
    print(f"{sys.argv[2]} {op['op']} {op['rate_per_s']:.0f} {op['p50_ms']:.1f} {op['p99_ms']:.1f} "
          f"{op['errors']} {'PASSED' if report['passed'] else 'FAILED'}")
PY
    grep "^$label " "$DIR/results" >&2
}

# scenarios LABEL: every figure's scenario against $TARGET_ARGS.
scenarios() {
    local label=$1
    for lines in 1 3 5; do
        drive "$label-cart$lines" reserve-batch --batch-lines "$lines" --hold-ttl-s 5
    done
    [ "$WHAT" = carts ] && return
    drive "$label-feed1" feed --connections 1
    drive "$label-feed" feed
    drive "$label-browse" browse
}

for round in $(seq 1 "$ROUNDS"); do
    TARGET_ARGS=(--target omnistock-sync --out-dir "$DIR/out-r$round")
    scenarios "r$round-single"
    start_nodes 3 "r$round-p64" --durability sync
    TARGET_ARGS=(--url "$URLS")
    scenarios "r$round-cluster3-p64"
    stop_nodes
    start_nodes 3 "r$round-p1" --durability sync --partitions 1
    for lines in 3 5; do
        drive "r$round-cluster3-p1-cart$lines" reserve-batch --batch-lines "$lines" --hold-ttl-s 5
    done
    stop_nodes
done
echo "label op req/s p50_ms p99_ms errors audit"
cat "$DIR/results"
