#!/usr/bin/env bash
# The test command (README, second command). Runs every test of the
# workspace: unit tests, the model-based property test (PROPTEST_CASES,
# default 50,000 cases), the threaded stress test, and each benchmark once
# in test mode so they cannot rot, then schemathesis against the running
# server. Fails loudly; skips nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
    echo "scripts/test.sh: cargo is required (install Rust from rustup.rs)" >&2
    exit 1
fi

cargo test --locked --all-targets

# The API fuzzed from its own OpenAPI document (installs schemathesis).
bash scripts/schemathesis.sh
