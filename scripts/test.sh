#!/usr/bin/env bash
# The test command (README, second command). Installs what the tests need
# from Debian's packages when it is missing (redis-server: the store tests
# start their own on free loopback ports; promtool, from the prometheus
# package: tests/it/metrics.rs checks /metrics with it; curl and jq:
# tests/it/readme.rs runs the README's examples; node: tests/it/openapi.rs runs
# the /docs page's script; chromium: tests/it/browser.rs loads the example
# storefront and the console in a headless Chromium), then runs every test of the
# workspace: unit tests, the model-based property test (PROPTEST_CASES,
# default 50,000 cases), the threaded stress test, the Redis write-behind
# tests (round trip, kill -9 in sync and async mode, Redis killed under
# load), partition leases and ownership on a real 6-process Redis Cluster,
# the README's examples, each benchmark once in test mode so they
# cannot rot, then schemathesis against the running server. Fails loudly;
# skips nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo is required (install Rust from rustup.rs)" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
APT_UPDATED=""

# need COMMAND PACKAGE SERVICE WHY: installs PACKAGE when COMMAND is missing,
# and stops the system SERVICE the package may start (the tests start their
# own servers); fails with WHY when it cannot.
need() {
    local command=$1 package=$2 service=$3 why=$4
    command -v "$command" >/dev/null 2>&1 && return 0
    echo "scripts/test.sh: $command is missing; installing it (Debian package $package)" >&2
    if [ -z "$APT_UPDATED" ]; then
        $SUDO apt-get update -qq >&2 || true
        APT_UPDATED=1
    fi
    if ! $SUDO apt-get install -y -qq "$package" >&2; then
        echo "scripts/test.sh: could not install $package; install it and rerun ($why)" >&2
        exit 1
    fi
    if [ -n "$service" ]; then
        $SUDO service "$service" stop >/dev/null 2>&1 || true
    fi
}

need redis-server redis-server redis-server "the store tests need a real Redis"
need redis-cli redis-tools "" "the cluster tests make a Redis Cluster with redis-cli --cluster create"
need promtool prometheus prometheus "tests/it/metrics.rs checks /metrics with promtool"
need curl curl "" "tests/it/readme.rs runs the README's curl examples"
need jq jq "" "tests/it/readme.rs runs the README's examples, which use jq"
need node nodejs "" "tests/it/openapi.rs runs the /docs page's script under Node"
need chromium chromium "" "tests/it/browser.rs drives a headless Chromium"
redis-server --version >&2
promtool --version 2>&1 | sed -n 1p >&2

cargo test --locked --workspace --all-targets

# The API fuzzed from its own OpenAPI document (installs schemathesis).
bash scripts/schemathesis.sh
