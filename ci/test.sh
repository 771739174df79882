#!/usr/bin/env bash
# The project's test command (the README points here): formatting, lints, every Rust test,
# then the broker binary that the real-client tests (ci/tests, pytest) run against.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --workspace
cargo build --bin spate
