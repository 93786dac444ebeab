#!/usr/bin/env bash
# Runs every check and test of the project: formatting, lints, and the whole
# test suite (unit, integration over real HTTP, process-kill durability),
# with the store conformance suite against both backends: the embedded store
# and a real Apache Cassandra node (scripts/cassandra.sh), and the Redis
# read cache's tests against a real Redis (scripts/redis.sh), and the search
# suite against both backends: tantivy and a real OpenSearch node
# (scripts/opensearch.sh), all of which this script starts and stops.
# This is the README's test command and what CI runs.
#
# Then a short fuzzing run (scripts/fuzz.sh, 15 s a target): by default of
# the targets that need only chat-wire and chat-token, whose instrumented
# build takes 2.4 CPU-minutes; the engine's and the API's targets build
# their whole dependency tree again with coverage instrumentation (7.7
# CPU-minutes, 13 minutes of wall time on a busy 2-core machine). CHAT_TEST_FUZZ=all runs every target,
# CHAT_TEST_FUZZ=skip none; CHAT_TEST_FUZZ_SECONDS sets the time per target.
#
# CHAT_TEST_SCYLLA=host:port uses a node that is already running instead
# (and leaves it running); CHAT_TEST_SCYLLA=skip runs without one, and the
# ScyllaDB half of the conformance suite then passes without running.
# CHAT_TEST_OPENSEARCH=host:port and CHAT_TEST_OPENSEARCH=skip do the same
# for OpenSearch (skipped, the OpenSearch variants print a notice and pass).
#
# Last, a crash-loop run (scripts/chaos.sh): 10 SIGKILLs of the services
# under traffic, on the embedded store, with the debug binaries that cargo
# test has just built (about half a minute). CHAT_TEST_CHAOS=skip leaves
# it out; CHAT_TEST_CHAOS_KILLS changes the number of kills. Then the
# search scenario of the load generator, small (scripts/search-bench.sh
# --quick), on the embedded index and on OpenSearch.
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
fi

# OpenSearch too (its jars are fetched once into .cache/opensearch; a start
# takes ~10 s, a first fetch a few minutes), overlapping the build.
opensearch_pid=""
opensearch_log=$(mktemp)
if [[ -z "${CHAT_TEST_OPENSEARCH:-}" ]]; then
    echo "== starting OpenSearch in the background (scripts/opensearch.sh start)"
    ./scripts/opensearch.sh start >"$opensearch_log" 2>&1 &
    opensearch_pid=$!
    stop_opensearch() {
        wait "$opensearch_pid" 2>/dev/null || true
        ./scripts/opensearch.sh stop || true
        rm -f "$opensearch_log"
    }
fi

# The Redis read cache's tests run against a real Redis (Debian's
# redis-server, installed by scripts/redis.sh if missing). CHAT_TEST_REDIS
# names one already running instead; CHAT_TEST_REDIS=skip runs without.
# A three-node Redis Cluster runs beside it for the cluster test
# (CHAT_TEST_REDIS_CLUSTER).
if [[ -z "${CHAT_TEST_REDIS:-}" ]]; then
    echo "== starting Redis (scripts/redis.sh start)"
    ./scripts/redis.sh start
    export CHAT_TEST_REDIS=127.0.0.1:${REDIS_PORT:-6390}
    echo "== starting a Redis Cluster (scripts/redis.sh cluster-start)"
    ./scripts/redis.sh cluster-start
    export CHAT_TEST_REDIS_CLUSTER=127.0.0.1:6391,127.0.0.1:6392,127.0.0.1:6393
    stop_redis() {
        ./scripts/redis.sh stop || true
        ./scripts/redis.sh cluster-stop || true
    }
elif [[ "${CHAT_TEST_REDIS}" == skip ]]; then
    unset CHAT_TEST_REDIS
fi
stop_services() {
    if declare -F stop_redis >/dev/null; then stop_redis; fi
    if declare -F stop_cassandra >/dev/null; then stop_cassandra; fi
    if declare -F stop_opensearch >/dev/null; then stop_opensearch; fi
}
trap stop_services EXIT

echo "== cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check)

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

if [[ -n "$opensearch_pid" ]]; then
    echo "== waiting for OpenSearch"
    if ! wait "$opensearch_pid"; then
        cat "$opensearch_log" >&2
        echo "OpenSearch did not start: see above and .cache/opensearch/opensearch.log" >&2
        exit 1
    fi
    cat "$opensearch_log"
    export CHAT_TEST_OPENSEARCH=127.0.0.1:${OPENSEARCH_PORT:-9200}
elif [[ "${CHAT_TEST_OPENSEARCH:-}" == skip ]]; then
    unset CHAT_TEST_OPENSEARCH
fi

echo "== cargo test (ScyllaDB conformance: ${CHAT_TEST_SCYLLA:-not run}; Redis: ${CHAT_TEST_REDIS:-not run}; Redis Cluster: ${CHAT_TEST_REDIS_CLUSTER:-not run}; OpenSearch: ${CHAT_TEST_OPENSEARCH:-not run})"
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

# The search scenario, small, on both backends (OpenSearch when it runs):
# the load generator's checks of every page, of the probes and of the
# indexed count, with the debug binaries.
echo "== search scenario (scripts/search-bench.sh --quick)"
CHAT_STORE=embedded ./scripts/search-bench.sh --quick "${CARGO_TARGET_DIR:-target}/debug"

case "${CHAT_TEST_FUZZ:-quick}" in
    skip) echo "== fuzzing: skipped (CHAT_TEST_FUZZ=skip)" ;;
    all)
        echo "== fuzzing: every target"
        ./scripts/fuzz.sh "${CHAT_TEST_FUZZ_SECONDS:-15}"
        ;;
    quick)
        echo "== fuzzing: the chat-wire and chat-token targets"
        ./scripts/fuzz.sh "${CHAT_TEST_FUZZ_SECONDS:-15}" json_strict number batch token
        ;;
    *)
        echo "CHAT_TEST_FUZZ must be quick, all or skip, not ${CHAT_TEST_FUZZ}" >&2
        exit 2
        ;;
esac
