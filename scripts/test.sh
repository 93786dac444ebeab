#!/usr/bin/env bash
# Runs every check and test of the project: formatting, lints, and the whole
# test suite (unit, integration over real HTTP, process-kill durability).
# This is the README's test command and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
cargo test --workspace --locked
