# Sourced by the cluster benchmarks (from the repository's root): checks
# the tools, builds the release binaries, and starts a loopback Redis
# Cluster of 3 masters and 3 replicas on ports 7100-7105 (bus ports
# 17100-17105) in a temporary $DIR, stopped with everything else on exit.
# Then `start_nodes COUNT PREFIX [ARGS...]` starts omnistock nodes on ports
# 8091.. (`serve --cluster`, key prefix PREFIX), waits until they are ready
# and sets NODE_PIDS and URLS (comma-separated); `stop_nodes` stops them.
for tool in redis-server redis-cli python3 curl; do
    command -v "$tool" >/dev/null || { echo "$0 needs $tool" >&2; exit 1; }
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

start_redis_cluster() {
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
}

start_nodes() {
    local count=$1 prefix=$2
    shift 2
    NODE_PIDS=()
    URLS=""
    for n in $(seq 1 "$count"); do
        target/release/omnistock serve --cluster --redis-url redis://127.0.0.1:7100 \
            --listen "127.0.0.1:809$n" --node-id "node-$n" --redis-key-prefix "$prefix" "$@" \
            >"$DIR/$prefix-$n.log" 2>&1 &
        NODE_PIDS+=($!); PIDS+=($!)
        URLS="${URLS:+$URLS,}http://127.0.0.1:809$n"
    done
    for n in $(seq 1 "$count"); do
        until curl -sf "127.0.0.1:809$n/readyz" >/dev/null; do sleep 0.1; done
    done
}

stop_nodes() {
    kill -TERM "${NODE_PIDS[@]}" 2>/dev/null || true
    wait "${NODE_PIDS[@]}" 2>/dev/null || true
}

trap cleanup EXIT
start_redis_cluster
