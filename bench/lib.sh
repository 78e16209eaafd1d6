# Shared by the bench scripts (ab.sh, http.sh, steady.sh, steady_ab.sh,
# steady_paired.sh, durability.sh, feed.sh, flood.sh, import.sh,
# instructions.sh, store.sh):
# sourced, not run. Loopback only.

# The admin key every bench engine starts with (the wrk scripts send it).
BENCH_KEY=bench-admin-key-0123456789

# With 2+ cores, servers go on core 0 and wrk on core 1, so the figures
# compare server CPU cost rather than scheduler luck.
pin_server=""; pin_client=""
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
    pin_server="taskset -c 0"; pin_client="taskset -c 1"
fi

# require SCRIPT TOOL... : fails loud when a tool is missing.
require() {
    local script=$1 tool package
    shift
    for tool in "$@"; do
        case $tool in
            callgrind_*) package=valgrind ;; # the Debian package that ships it
            *) package=$tool ;;
        esac
        command -v "$tool" >/dev/null || { echo "$script needs $tool (apt-get install $package)" >&2; exit 1; }
    done
}

# free_port -> a loopback TCP port free right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_engine BINARY PORT: omnistock with the demo data, rate limiting
# off, in the background; its pid is left in $started.
start_engine() {
    OMNISTOCK_ADMIN_KEY=$BENCH_KEY $pin_server "$1" serve --demo --listen "127.0.0.1:$2" \
        --rate-limit-per-second 0 2>/dev/null &
    started=$!
}

# start_noop BINARY PORT: the no-op server in the background; pid in $started.
start_noop() {
    $pin_server "$1" "127.0.0.1:$2" >/dev/null &
    started=$!
}

# wait_until_up PORT PATH: polls until PATH answers 2xx.
wait_until_up() {
    until curl -fs -o /dev/null "http://127.0.0.1:$1$2"; do sleep 0.1; done
}

# stock_hot PORT: enough stock on WH-NORD/HOT that every reservation of a
# run is granted.
stock_hot() {
    curl -fs -o /dev/null -X PUT -H "Authorization: Bearer $BENCH_KEY" -H 'Content-Type: application/json' \
        -d '{"on_hand": 4000000000}' "http://127.0.0.1:$1/v1/stock/WH-NORD/HOT"
}

# rss_mb PID -> the resident set of process PID, in MB.
rss_mb() {
    echo $(( $(ps -o rss= -p "$1") / 1024 ))
}

# wrk_rate URL SECONDS [SCRIPT] -> req/s (wrk -t1 -c64).
wrk_rate() {
    $pin_client wrk -t1 -c64 -d"$2s" ${3:+-s "$3"} "$1" | awk '/Requests\/sec/ {print $2}'
}

# reserve_rate PORT SECONDS -> req/s of single-line reservations.
reserve_rate() {
    wrk_rate "http://127.0.0.1:$1/v1/reservations" "$2" bench/reserve.lua
}
