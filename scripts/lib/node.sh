# Sourced by scripts/cassandra.sh and scripts/opensearch.sh: the life cycle
# of one local test node that the script started in the background, known
# by its pid file. The sourcing script sets, before calling these:
#   NODE_NAME         how logs name it ("Cassandra")
#   NODE_MARKER       a word of its java command line (to tell our node from
#                     a reused pid)
#   NODE_POLL_S       seconds between readiness checks
#   NODE_STOP_GRACE_S seconds between SIGTERM and SIGKILL
#   PIDFILE LOG HOST PORT START_TIMEOUT_S
# and defines log() and answers() (whether the node serves on HOST:PORT).

# The pid of the node this script started, if it still runs.
running_pid() {
    [[ -f "$PIDFILE" ]] || return 1
    local pid
    pid=$(cat "$PIDFILE")
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null \
        && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "$NODE_MARKER" \
        && echo "$pid"
}

# wait_ready PID: until the node answers; fails if it exits or takes longer
# than START_TIMEOUT_S, showing the end of its log.
wait_ready() {
    local pid=$1 started=$SECONDS
    while ! answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$NODE_NAME exited during start-up; the end of $LOG:"
            tail -n 40 "$LOG" >&2
            rm -f "$PIDFILE"
            exit 1
        fi
        if ((SECONDS - started > START_TIMEOUT_S)); then
            log "$NODE_NAME did not answer on $HOST:$PORT within ${START_TIMEOUT_S} s; the end of $LOG:"
            tail -n 40 "$LOG" >&2
            exit 1
        fi
        sleep "$NODE_POLL_S"
    done
    log "$NODE_NAME answers on $HOST:$PORT (waited $((SECONDS - started)) s)"
}

stop() {
    local pid
    if ! pid=$(running_pid); then
        log "not running"
        rm -f "$PIDFILE"
        return 0
    fi
    kill -TERM "$pid"
    local waited=0
    while kill -0 "$pid" 2>/dev/null; do
        if ((waited >= NODE_STOP_GRACE_S)); then
            log "still running after $NODE_STOP_GRACE_S s; killing"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 1
        waited=$((waited + 1))
    done
    rm -f "$PIDFILE"
    log "stopped"
}

status() {
    local pid
    if pid=$(running_pid); then
        if answers; then
            echo "running (pid $pid), answering on $HOST:$PORT"
        else
            echo "running (pid $pid), not answering yet on $HOST:$PORT"
        fi
    elif answers; then
        echo "not started by this script, but something answers on $HOST:$PORT"
    else
        echo "not running"
        return 3
    fi
}
