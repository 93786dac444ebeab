#!/usr/bin/env bash
# Crash loops under traffic: `loadgen chaos` starts the persistence API, the
# auth service and the engine, kills them with SIGKILL at random moments
# (a seeded schedule, printed) while WebSocket and HTTP publishers, syncing
# readers and subscription churn run, restarts each one on the same port
# with the same data dir, and checks that every acknowledged message is in
# history exactly once, numbering has no gap, the counts are exact and the
# subscriptions are intact. Exits non-zero on any violation.
#
# Usage: scripts/chaos.sh [--release] [loadgen chaos flags...]
#   scripts/chaos.sh --kills 10                 # what scripts/test.sh runs
#   scripts/chaos.sh --release --kills 100 --seed 42
#   CHAT_STORE=scylla://127.0.0.1:9042/chaos scripts/chaos.sh --kills 20
# `loadgen chaos --help` lists every flag. The binaries come from
# ${CARGO_TARGET_DIR:-target}/debug (or release with --release); they are
# built only when missing (CHAT_CHAOS_BUILD=1 builds them always).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=debug
if [[ "${1:-}" == --release ]]; then
    profile=release
    shift
fi
target_dir=${CARGO_TARGET_DIR:-target}
bin_dir="$target_dir/$profile"

if [[ "${CHAT_CHAOS_BUILD:-}" == 1 || ! -x "$bin_dir/chat" || ! -x "$bin_dir/loadgen" ]]; then
    build_flags=(--locked -p chat -p loadgen)
    if [[ "$profile" == release ]]; then
        build_flags+=(--release)
    fi
    echo "== cargo build ${build_flags[*]}"
    cargo build "${build_flags[@]}"
fi

# The run is bounded by --kills; the timeout only guards against a hang of
# the harness itself (each of its own waits is bounded too).
exec timeout --signal=TERM --kill-after=30 "${CHAT_CHAOS_TIMEOUT_S:-3600}" \
    "$bin_dir/loadgen" chaos --chat-bin "$bin_dir/chat" "$@"
