#!/usr/bin/env bash
# A Redis server on 127.0.0.1 for the read cache's tests: Debian's
# redis-server, installed with apt-get if missing, run on its own port with
# its data in .cache/redis (no persistence: the cache may lose everything,
# and the tests check that it may).
#
#   scripts/redis.sh start    install if needed, start, wait for PING
#   scripts/redis.sh stop     stop the server this script started
#   scripts/redis.sh status   say whether it runs and answers
#   scripts/redis.sh kill     SIGKILL it (the cache's fault tests)
#   scripts/redis.sh cluster-start|cluster-stop|cluster-status
#                             a Redis Cluster of three masters on ports
#                             6391-6393 (REDIS_CLUSTER_PORTS), for the
#                             cache's cluster tests
#
# Environment: REDIS_PORT (default 6390, not Redis's own 6379, so a Redis
# already on this machine is left alone).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
CACHE="$ROOT/.cache/redis"
PORT=${REDIS_PORT:-6390}
PIDFILE="$CACHE/redis-$PORT.pid"
LOG="$CACHE/redis-$PORT.log"
HOST=127.0.0.1

log() { echo "redis.sh: $*" >&2; }

answers() {
    command -v redis-cli >/dev/null && [[ "$(redis-cli -h "$HOST" -p "$PORT" ping 2>/dev/null)" == PONG ]]
}

ensure_installed() {
    if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        if command -v apt-get >/dev/null; then
            log "installing redis-server with apt-get"
            apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
            # The package starts a system service on 6379; this script runs its own.
            if command -v systemctl >/dev/null; then systemctl stop redis-server >/dev/null 2>&1 || true; fi
        fi
    fi
    command -v redis-server >/dev/null || { log "redis-server not found"; exit 1; }
}

start() {
    if answers; then
        log "answers on $HOST:$PORT already"
        return 0
    fi
    ensure_installed
    mkdir -p "$CACHE"
    redis-server --bind "$HOST" --port "$PORT" --dir "$CACHE" \
        --save "" --appendonly no --daemonize yes \
        --pidfile "$PIDFILE" --logfile "$LOG" \
        --maxmemory 256mb --maxmemory-policy volatile-lru
    local started=$SECONDS
    while ! answers; do
        if ((SECONDS - started > 20)); then
            log "Redis did not answer on $HOST:$PORT within 20 s; the end of $LOG:"
            tail -n 20 "$LOG" >&2
            exit 1
        fi
        sleep 0.1
    done
    log "Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') answers on $HOST:$PORT"
}

pid() {
    [[ -f "$PIDFILE" ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null && cat "$PIDFILE"
}

stop() {
    local p
    if ! p=$(pid); then
        log "not running"
        return 0
    fi
    kill -TERM "$p"
    while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
    log "stopped"
}

CLUSTER_PORTS=${REDIS_CLUSTER_PORTS:-6391 6392 6393}

cluster_answers() {
    local port
    for port in $CLUSTER_PORTS; do
        [[ "$(redis-cli -h "$HOST" -p "$port" cluster info 2>/dev/null | tr -d '\r' | grep cluster_state)" == "cluster_state:ok" ]] || return 1
    done
}

cluster_start() {
    if command -v redis-cli >/dev/null && cluster_answers; then
        log "the cluster answers on ports $CLUSTER_PORTS already"
        return 0
    fi
    ensure_installed
    local port nodes=()
    for port in $CLUSTER_PORTS; do
        local dir="$CACHE/cluster-$port"
        rm -rf "$dir"
        mkdir -p "$dir"
        redis-server --bind "$HOST" --port "$port" --dir "$dir" \
            --cluster-enabled yes --cluster-config-file nodes.conf \
            --save "" --appendonly no --daemonize yes \
            --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
            --maxmemory 128mb --maxmemory-policy volatile-lru
        nodes+=("$HOST:$port")
    done
    local started=$SECONDS
    for port in $CLUSTER_PORTS; do
        while [[ "$(redis-cli -h "$HOST" -p "$port" ping 2>/dev/null)" != PONG ]]; do
            ((SECONDS - started > 20)) && { log "node $port did not answer"; exit 1; }
            sleep 0.1
        done
    done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
    while ! cluster_answers; do
        ((SECONDS - started > 30)) && { log "the cluster did not become ok"; exit 1; }
        sleep 0.2
    done
    log "a Redis Cluster answers on ${nodes[*]}"
}

cluster_stop() {
    local port
    for port in $CLUSTER_PORTS; do
        local pidfile="$CACHE/cluster-$port/redis.pid"
        if [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            kill -TERM "$(cat "$pidfile")"
        fi
    done
    log "cluster stopped"
}

case "${1:-}" in
    start) start ;;
    cluster-start) cluster_start ;;
    cluster-stop) cluster_stop ;;
    cluster-status)
        if cluster_answers; then echo "a cluster answers on ports $CLUSTER_PORTS"; else echo "not running"; exit 3; fi
        ;;
    stop) stop ;;
    kill)
        if p=$(pid); then kill -KILL "$p"; log "killed $p"; fi
        ;;
    status)
        if answers; then echo "answering on $HOST:$PORT"; else echo "not running"; exit 3; fi
        ;;
    *)
        echo "usage: $0 start|stop|status|kill|cluster-start|cluster-stop|cluster-status" >&2
        exit 2
        ;;
esac
