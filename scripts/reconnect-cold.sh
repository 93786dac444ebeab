#!/usr/bin/env bash
# A reconnect storm against an engine restarted cold (empty rings), on the
# Cassandra store with and without the Redis read cache, in one run:
#   scripts/reconnect-cold.sh [--clients N] [--missed M] DIR
# DIR holds release builds of `chat` and `loadgen`. Needs
# `scripts/cassandra.sh start` and, for the Redis row, `scripts/redis.sh
# start`. The three services run as separate processes so that only the
# engine is restarted, after the missed messages are published and before
# the clients come back: every sync then reads past the engine's rings.
set -euo pipefail
cd "$(dirname "$0")/.."

clients=1000
missed=500
while [[ $# -gt 1 ]]; do
    case "$1" in
        --clients) clients=$2; shift 2 ;;
        --missed) missed=$2; shift 2 ;;
        *) break ;;
    esac
done
dir=${1:?usage: scripts/reconnect-cold.sh [--clients N] [--missed M] DIR}
out=${CHAT_RECONNECT_OUT:-$(mktemp -d -t chat-reconnect.XXXXXX)}
mkdir -p "$out"
export CHAT_RECONNECT_OUT=$out
[[ "${RECONNECT_COLD_RESTART:-}" == yes ]] || echo "== results in $out"

export CHAT_OPERATOR_KEY=op_reconnect_suite
export RUST_LOG=warn
# What `chat up` gives its services: one another's addresses.
export CHAT_ENGINE_ADDR=127.0.0.1:8080 CHAT_API_ADDR=127.0.0.1:8081 CHAT_AUTH_ADDR=127.0.0.1:8082
export CHAT_ENGINE_PIDFILE="$out/engine.pid"
cassandra=127.0.0.1:9042
redis=redis://127.0.0.1:6390

# The restart that loadgen runs: stop the engine, start a new one detached.
if [[ "${RECONNECT_COLD_RESTART:-}" == yes ]]; then
    pid=$(cat "$CHAT_ENGINE_PIDFILE")
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    setsid "$dir/chat" engine >>"$out/engine.log" 2>&1 < /dev/null &
    echo $! >"$CHAT_ENGINE_PIDFILE"
    exit 0
fi

pids=()
stop_all() {
    [[ -f "$CHAT_ENGINE_PIDFILE" ]] && kill -TERM "$(cat "$CHAT_ENGINE_PIDFILE")" 2>/dev/null || true
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    pids=()
    sleep 1
}
trap stop_all EXIT

healthy() { curl -fsS "http://$1/healthz" >/dev/null 2>&1; }
wait_healthy() {
    for _ in $(seq 1 200); do healthy "$1" && return 0; sleep 0.1; done
    echo "   $1 did not become healthy" >&2
    return 1
}

run=$(date +%s)
for row in cassandra cassandra+redis; do
    if ! (exec 3<>"/dev/tcp/${cassandra%:*}/${cassandra#*:}") 2>/dev/null; then
        echo "-- $row: skipped, nothing answers on $cassandra (scripts/cassandra.sh start)"
        continue
    fi
    data=$(mktemp -d -t chat-reconnect-data.XXXXXX)
    export CHAT_DATA_DIR=$data
    export CHAT_STORE="scylla://$cassandra/reconnect_${run}_${row//+/_}"
    # Embedded search needs the embedded store.
    export CHAT_SEARCH=off
    unset CHAT_REDIS_URL CHAT_CACHE_CHAT_MESSAGES CHAT_CACHE_NAMESPACE
    if [[ "$row" == *+redis ]]; then
        # The cache holds every missed message of the chat.
        export CHAT_REDIS_URL=$redis CHAT_CACHE_CHAT_MESSAGES=$((missed + 100))
        export CHAT_CACHE_NAMESPACE="reconnect-$run"
    fi
    "$dir/chat" api >"$out/$row-api.log" 2>&1 &
    pids+=($!)
    wait_healthy 127.0.0.1:8081
    "$dir/chat" auth >"$out/$row-auth.log" 2>&1 &
    pids+=($!)
    wait_healthy 127.0.0.1:8082
    setsid "$dir/chat" engine >"$out/engine.log" 2>&1 < /dev/null &
    echo $! >"$CHAT_ENGINE_PIDFILE"
    wait_healthy 127.0.0.1:8080
    echo "-- $row: loadgen reconnect --clients $clients --missed $missed --restart-engine"
    "$dir/loadgen" reconnect --clients "$clients" --missed "$missed" \
        --restart-engine "RECONNECT_COLD_RESTART=yes $0 $dir" \
        --json "$out/$row.json" >"$out/$row.txt" 2>&1 \
        || echo "   (loadgen reported a failure: $out/$row.txt)"
    grep -E "restarted|caught up|check" "$out/$row.txt" | sed 's/^/   /' || true
    curl -fsS http://127.0.0.1:8081/metrics >"$out/$row-api-metrics.txt" 2>/dev/null || true
    stop_all
    rm -rf "$data"
done
