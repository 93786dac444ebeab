#!/usr/bin/env bash
# Runs every check and test of the project: formatting, lints, and the whole
# test suite (unit, integration over real HTTP, process-kill durability),
# with the store conformance suite against both backends: the embedded store
# and a real Apache Cassandra node (scripts/cassandra.sh), which this script
# starts and stops.
# This is the README's test command and what CI runs.
#
# CHAT_TEST_SCYLLA=host:port uses a node that is already running instead
# (and leaves it running); CHAT_TEST_SCYLLA=skip runs without one, and the
# ScyllaDB half of the conformance suite then passes without running.
#
# Last, a crash-loop run (scripts/chaos.sh): 10 SIGKILLs of the services
# under traffic, on the embedded store, with the debug binaries that cargo
# test has just built (about half a minute). CHAT_TEST_CHAOS=skip leaves
# it out; CHAT_TEST_CHAOS_KILLS changes the number of kills.
set -euo pipefail
cd "$(dirname "$0")/.."

# Start Cassandra in the background now: its ~30 s start overlaps the build.
cassandra_pid=""
cassandra_log=$(mktemp)
if [[ -z "${CHAT_TEST_SCYLLA:-}" ]]; then
    echo "== starting Cassandra in the background (scripts/cassandra.sh start)"
    ./scripts/cassandra.sh start >"$cassandra_log" 2>&1 &
    cassandra_pid=$!
    stop_cassandra() {
        # Let a start still under way finish first, so nothing outlives us.
        wait "$cassandra_pid" 2>/dev/null || true
        ./scripts/cassandra.sh stop || true
        rm -f "$cassandra_log"
    }
    trap stop_cassandra EXIT
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

if [[ -n "$cassandra_pid" ]]; then
    echo "== waiting for Cassandra"
    if ! wait "$cassandra_pid"; then
        cat "$cassandra_log" >&2
        echo "Cassandra did not start: see above and .cache/cassandra/cassandra.log" >&2
        exit 1
    fi
    cat "$cassandra_log"
    export CHAT_TEST_SCYLLA=127.0.0.1:9042
elif [[ "${CHAT_TEST_SCYLLA:-}" == skip ]]; then
    unset CHAT_TEST_SCYLLA
fi

echo "== cargo test (ScyllaDB conformance: ${CHAT_TEST_SCYLLA:-not run})"
cargo test --workspace --locked

if [[ "${CHAT_TEST_CHAOS:-}" == skip ]]; then
    echo "== chaos: skipped (CHAT_TEST_CHAOS=skip)"
else
    echo "== chaos: ${CHAT_TEST_CHAOS_KILLS:-10} kills under traffic (scripts/chaos.sh)"
    # The embedded store whatever CHAT_STORE says: Cassandra is the
    # conformance suite's, and may be stopping by now.
    CHAT_STORE=embedded CHAT_CHAOS_TIMEOUT_S=180 \
        ./scripts/chaos.sh --kills "${CHAT_TEST_CHAOS_KILLS:-10}"
fi
