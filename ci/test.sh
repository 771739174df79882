#!/usr/bin/env bash
# The project's test command (the README points here): formatting, lints, every Rust test,
# every fuzz target for a bounded time (ci/fuzz.sh), then the broker binary and the
# real-client tests against it (ci/tests, pytest; ci/install.sh installs the clients).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --workspace
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" ci/fuzz.sh
cargo build --bin spate
python3 -m pytest ci/tests -q
