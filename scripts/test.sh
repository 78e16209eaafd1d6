#!/usr/bin/env bash
# The test command (README, second command). Installs what the tests need
# (redis-server: the store tests start their own on free loopback ports;
# promtool, from Debian's prometheus package: tests/metrics.rs checks
# /metrics with it), then runs every test of the workspace: unit tests, the model-based property
# test (PROPTEST_CASES, default 50,000 cases), the threaded stress test, the
# Redis write-behind tests (round trip, kill -9 in sync and async mode, Redis
# killed under load), each benchmark once in test mode so they cannot rot,
# then schemathesis against the running server. Fails loudly; skips nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo is required (install Rust from rustup.rs)" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! command -v redis-server >/dev/null 2>&1; then
    echo "scripts/test.sh: redis-server is missing; installing it (Debian package)" >&2
    if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq redis-server; } >&2; then
        echo "scripts/test.sh: could not install redis-server; install it and rerun (the store tests need a real Redis)" >&2
        exit 1
    fi
    # The package starts a system instance; the tests start their own.
    $SUDO service redis-server stop >/dev/null 2>&1 || true
fi
redis-server --version >&2

if ! command -v promtool >/dev/null 2>&1; then
    echo "scripts/test.sh: promtool is missing; installing it (Debian package prometheus)" >&2
    if ! { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq prometheus; } >&2; then
        echo "scripts/test.sh: could not install prometheus (promtool); install it and rerun (tests/metrics.rs checks /metrics with promtool)" >&2
        exit 1
    fi
    # The package starts a Prometheus server (port 9090); the tests need only promtool.
    $SUDO service prometheus stop >/dev/null 2>&1 || true
fi
promtool --version 2>&1 | sed -n 1p >&2

cargo test --locked --workspace --all-targets

# The API fuzzed from its own OpenAPI document (installs schemathesis).
bash scripts/schemathesis.sh
