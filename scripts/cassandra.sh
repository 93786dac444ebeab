#!/usr/bin/env bash
# A single Apache Cassandra 5.0 node on 127.0.0.1:9042 for the ScyllaDB
# backend's tests (the backend speaks CQL, which Cassandra and ScyllaDB share).
#
#   scripts/cassandra.sh start    fetch the jars if needed, start, wait for CQL
#   scripts/cassandra.sh stop     stop the node this script started
#   scripts/cassandra.sh status   say whether it runs and answers
#   scripts/cassandra.sh clean    stop, and delete its data
#   scripts/cassandra.sh fetch    only fetch the jars (and Java 17, Maven)
#
# The jars come from Maven Central (scripts/cassandra/pom.xml, fetched with
# `mvn dependency:copy-dependencies`) into .cache/cassandra/lib, which is not
# committed: a fresh clone fetches them once. Data, commit log and the log
# file live in .cache/cassandra too. Cassandra 5.0 runs on Java 17 (it calls
# System.setSecurityManager, which newer Java refuses), found explicitly.
#
# Environment: CASSANDRA_START_TIMEOUT_S (default 240), CASSANDRA_HEAP (2G:
# a run of the test suite holds dozens of keyspaces of a dozen tables each,
# and 1G ran out with read positions' table added).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
POM="$ROOT/scripts/cassandra/pom.xml"
CACHE="$ROOT/.cache/cassandra"
LIB="$CACHE/lib"
DATA="$CACHE/data"
PIDFILE="$CACHE/cassandra.pid"
LOG="$CACHE/cassandra.log"
HOST=127.0.0.1
PORT=9042
START_TIMEOUT_S=${CASSANDRA_START_TIMEOUT_S:-240}
HEAP=${CASSANDRA_HEAP:-2G}

NODE_NAME=Cassandra
NODE_MARKER=CassandraDaemon
NODE_POLL_S=1
NODE_STOP_GRACE_S=60
# running_pid, wait_ready, stop, status.
# shellcheck source=lib/node.sh
source "$ROOT/scripts/lib/node.sh"

log() { echo "cassandra.sh: $*" >&2; }

version() {
    sed -n 's:.*<cassandra.version>\(.*\)</cassandra.version>.*:\1:p' "$POM"
}

answers() {
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
}

find_java17() {
    local candidate
    for candidate in "${JAVA17_HOME:-/nonexistent}"/bin/java /usr/lib/jvm/*17*/bin/java; do
        if [[ -x "$candidate" ]] && "$candidate" -version 2>&1 | grep -q 'version "17'; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

ensure_tools() {
    if ! find_java17 >/dev/null || ! command -v mvn >/dev/null; then
        if command -v apt-get >/dev/null; then
            log "installing Java 17 and Maven with apt-get"
            apt-get update -qq >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
        fi
    fi
    find_java17 >/dev/null || { log "no Java 17 found (looked in /usr/lib/jvm/*17*)"; exit 1; }
    command -v mvn >/dev/null || { log "mvn not found"; exit 1; }
}

fetch() {
    local want
    want=$(version)
    if [[ -f "$LIB/.version" && "$(cat "$LIB/.version")" == "$want" ]]; then
        return 0
    fi
    log "fetching Cassandra $want from Maven Central into $LIB"
    local started=$SECONDS
    rm -rf "$LIB.partial"
    mkdir -p "$CACHE"
    if ! mvn -B -q -Dstyle.color=never -f "$POM" dependency:copy-dependencies \
        -DoutputDirectory="$LIB.partial" -DincludeScope=runtime >"$CACHE/mvn.log" 2>&1; then
        cat "$CACHE/mvn.log" >&2
        log "fetching the jars with Maven failed (above)"
        exit 1
    fi
    echo "$want" >"$LIB.partial/.version"
    rm -rf "$LIB"
    mv "$LIB.partial" "$LIB"
    log "fetched $(ls "$LIB" | wc -l) jars in $((SECONDS - started)) s"
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
    local java jamm
    java=$(find_java17)
    mkdir -p "$DATA" "$CACHE/logs"
    jamm=$(ls "$LIB"/jamm-*.jar 2>/dev/null | head -n 1 || true)
    local options=(
        -Xms"$HEAP" -Xmx"$HEAP" -Xss256k
        -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1
        -XX:G1HeapRegionSize=16m -XX:MaxGCPauseMillis=300
        -XX:+ExitOnOutOfMemoryError
        -Djava.net.preferIPv4Stack=true
        # The JPMS exports and opens of Cassandra's conf/jvm17-server.options.
        -Djdk.attach.allowAttachSelf=true
        --add-exports java.base/jdk.internal.misc=ALL-UNNAMED
        --add-exports java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.registry=ALL-UNNAMED
        --add-exports java.rmi/sun.rmi.server=ALL-UNNAMED
        --add-exports java.sql/java.sql=ALL-UNNAMED
        --add-exports java.base/java.lang.ref=ALL-UNNAMED
        --add-exports jdk.unsupported/sun.misc=ALL-UNNAMED
        --add-exports jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED
        --add-exports jdk.attach/sun.tools.attach=ALL-UNNAMED
        --add-opens java.base/java.lang.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.loader=ALL-UNNAMED
        --add-opens java.base/jdk.internal.ref=ALL-UNNAMED
        --add-opens java.base/jdk.internal.reflect=ALL-UNNAMED
        --add-opens java.base/jdk.internal.math=ALL-UNNAMED
        --add-opens java.base/jdk.internal.module=ALL-UNNAMED
        --add-opens java.base/jdk.internal.util.jar=ALL-UNNAMED
        --add-opens jdk.management/com.sun.management.internal=ALL-UNNAMED
        --add-opens java.base/sun.nio.ch=ALL-UNNAMED
        --add-opens java.base/java.io=ALL-UNNAMED
        --add-opens java.base/java.lang.reflect=ALL-UNNAMED
        --add-opens jdk.compiler/com.sun.tools.javac=ALL-UNNAMED
        --add-opens java.base/java.lang=ALL-UNNAMED
        --add-opens java.base/java.util=ALL-UNNAMED
        -Dio.netty.tryReflectionSetAccessible=true
        -Dio.netty.allocator.useCacheForAllThreads=true
        -Dio.netty.allocator.maxOrder=11
        # The node: config as a URL, storage under the cache, one node.
        -Dcassandra.config="file://$ROOT/scripts/cassandra/cassandra.yaml"
        -Dlogback.configurationFile="file://$ROOT/scripts/cassandra/logback.xml"
        -Dcassandra.storagedir="$DATA"
        -Dcassandra.logdir="$CACHE/logs"
        -Dcassandra-foreground=yes
        -Dcassandra.skip_wait_for_gossip_to_settle=0
        -Dcassandra.ring_delay_ms=1000
    )
    if [[ -n "$jamm" ]]; then
        options+=(-javaagent:"$jamm")
    fi
    log "starting Cassandra $(version) with $java (log: $LOG)"
    # setsid: the node outlives this script and gets no signal meant for it.
    setsid nohup "$java" "${options[@]}" -cp "$LIB/*" \
        org.apache.cassandra.service.CassandraDaemon >"$LOG" 2>&1 </dev/null &
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
        rm -rf "$DATA" "$CACHE/logs" "$LOG"
        ;;
    *)
        echo "usage: $0 start|stop|status|clean|fetch" >&2
        exit 2
        ;;
esac
