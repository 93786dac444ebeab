#!/usr/bin/env bash
# A single OpenSearch 2.19 node on 127.0.0.1:9200 for the OpenSearch search
# backend's tests.
#
#   scripts/opensearch.sh start    fetch the jars if needed, start, wait for HTTP
#   scripts/opensearch.sh stop     stop the node this script started
#   scripts/opensearch.sh status   say whether it runs and answers
#   scripts/opensearch.sh clean    stop, and delete its data
#   scripts/opensearch.sh fetch    only fetch the jars and build the launcher
#
# The jars come from Maven Central (scripts/opensearch/pom.xml: the server,
# the netty4 HTTP transport and the common analyzers, fetched with
# `mvn dependency:copy-dependencies`) into .cache/opensearch/lib, which is
# not committed: a fresh clone fetches them once. The node is started by
# scripts/opensearch/Launcher.java (compiled here with javac), which loads
# those two modules as classpath plugins and runs one node with single-node
# discovery; it needs no distribution tarball, no security manager and no
# non-root user. Data and the log live in .cache/opensearch too. The 2.19
# line is the newest that runs on Java 17.
#
# Environment: OPENSEARCH_START_TIMEOUT_S (default 120), OPENSEARCH_HEAP (512m),
# OPENSEARCH_PORT (9200).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
POM="$ROOT/scripts/opensearch/pom.xml"
LAUNCHER="$ROOT/scripts/opensearch/Launcher.java"
CACHE="$ROOT/.cache/opensearch"
LIB="$CACHE/lib"
CLASSES="$CACHE/classes"
HOME_DIR="$CACHE/home"
PIDFILE="$CACHE/opensearch.pid"
LOG="$CACHE/opensearch.log"
HOST=127.0.0.1
PORT=${OPENSEARCH_PORT:-9200}
START_TIMEOUT_S=${OPENSEARCH_START_TIMEOUT_S:-120}
HEAP=${OPENSEARCH_HEAP:-512m}

NODE_NAME=OpenSearch
NODE_MARKER=Launcher
NODE_POLL_S=0.5
NODE_STOP_GRACE_S=30
# running_pid, wait_ready, stop, status.
# shellcheck source=lib/node.sh
source "$ROOT/scripts/lib/node.sh"

log() { echo "opensearch.sh: $*" >&2; }

version() {
    sed -n 's:.*<opensearch.version>\(.*\)</opensearch.version>.*:\1:p' "$POM"
}

answers() {
    curl -fsS -m 2 "http://$HOST:$PORT/" >/dev/null 2>&1
}

# A Java 17 home with javac (the launcher is compiled here).
find_jdk17() {
    local candidate
    for candidate in "${JAVA17_HOME:-/nonexistent}" /usr/lib/jvm/*17*; do
        if [[ -x "$candidate/bin/javac" ]] && "$candidate/bin/java" -version 2>&1 | grep -q 'version "17'; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_tools() {
    if ! find_jdk17 >/dev/null || ! command -v mvn >/dev/null || ! command -v curl >/dev/null; then
        if command -v apt-get >/dev/null; then
            log "installing Java 17, Maven and curl with apt-get"
            apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless maven curl >/dev/null
        fi
    fi
    find_jdk17 >/dev/null || { log "no Java 17 JDK found (looked in /usr/lib/jvm/*17*)"; exit 1; }
    command -v mvn >/dev/null || { log "mvn not found"; exit 1; }
    command -v curl >/dev/null || { log "curl not found"; exit 1; }
}

fetch() {
    local want jdk
    want="$(version) $(sha256sum "$LAUNCHER" | cut -c1-16)"
    if [[ -f "$CACHE/.version" && "$(cat "$CACHE/.version")" == "$want" ]]; then
        return 0
    fi
    log "fetching OpenSearch $(version) from Maven Central into $LIB"
    local started=$SECONDS
    rm -rf "$LIB.partial" "$CLASSES"
    mkdir -p "$CACHE"
    if ! mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DoutputDirectory="$LIB.partial" -DincludeScope=runtime >"$CACHE/mvn.log" 2>&1; then
        cat "$CACHE/mvn.log" >&2
        log "fetching the jars with Maven failed (above)"
        exit 1
    fi
    rm -rf "$LIB"
    mv "$LIB.partial" "$LIB"
    jdk=$(find_jdk17)
    mkdir -p "$CLASSES"
    "$jdk/bin/javac" -nowarn -cp "$LIB/*" -d "$CLASSES" "$LAUNCHER"
    echo "$want" >"$CACHE/.version"
    log "fetched $(ls "$LIB" | wc -l) jars and built the launcher in $((SECONDS - started)) s"
}

start() {
    if pid=$(running_pid); then
        log "already running (pid $pid)"
        wait_ready "$pid"
        return
    fi
    if answers; then
        log "something else answers on $HOST:$PORT; using it"
        return 0
    fi
    ensure_tools
    fetch
    local jdk
    jdk=$(find_jdk17)
    mkdir -p "$HOME_DIR/config" "$HOME_DIR/data" "$HOME_DIR/logs" "$HOME_DIR/plugins"
    local options=(
        -Xms"$HEAP" -Xmx"$HEAP"
        -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError
        -Djava.net.preferIPv4Stack=true
        -Dlog4j2.disable.jmx=true
        -Dopensearch.path.home="$HOME_DIR"
        -Dopensearch.path.data="$HOME_DIR/data"
        -Dopensearch.path.logs="$HOME_DIR/logs"
        -Dopensearch.cluster.name=chat-test
        -Dopensearch.node.name=chat-test
        -Dopensearch.discovery.type=single-node
        -Dopensearch.network.host="$HOST"
        -Dopensearch.http.port="$PORT"
        -Dopensearch.transport.port=$((PORT + 100))
        # A test node on a shared disk: no flood-stage read-only indices.
        -Dopensearch.cluster.routing.allocation.disk.threshold_enabled=false
    )
    log "starting OpenSearch $(version) with $jdk (log: $LOG)"
    # setsid: the node outlives this script and gets no signal meant for it.
    setsid nohup "$jdk/bin/java" "${options[@]}" -cp "$CLASSES:$LIB/*" \
        Launcher >"$LOG" 2>&1 </dev/null &
    echo $! >"$PIDFILE"
    wait_ready "$!"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    fetch)
        ensure_tools
        fetch
        ;;
    clean)
        stop
        rm -rf "$HOME_DIR" "$LOG"
        ;;
    *)
        echo "usage: $0 start|stop|status|clean|fetch" >&2
        exit 2
        ;;
esac
