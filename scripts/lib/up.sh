# Sourced by the benchmark scripts: one `chat up` at a time, on the default
# ports, started and stopped between runs.

up_pid=""

# up_start WAIT_S LOG CHAT [NAME=VALUE...]: starts `CHAT up` with those
# variables, its output in LOG; fails when the engine and the API do not
# both answer /healthz within WAIT_S seconds.
up_start() {
    local wait_s=$1 log=$2 chat=$3
    shift 3
    env "$@" "$chat" up >"$log" 2>&1 &
    up_pid=$!
    local tries=$((wait_s * 5))
    for _ in $(seq 1 "$tries"); do
        if curl -fsS http://127.0.0.1:8080/healthz >/dev/null 2>&1 \
            && curl -fsS http://127.0.0.1:8081/healthz >/dev/null 2>&1; then
            return 0
        fi
        sleep 0.2
    done
    return 1
}

# up_stop: Ctrl-C to the running `chat up`, and wait for it.
up_stop() {
    if [[ -n "$up_pid" ]]; then
        kill -INT "$up_pid" 2>/dev/null || true
        wait "$up_pid" 2>/dev/null || true
        up_pid=""
    fi
}

# answers HOST:PORT: whether something accepts TCP connections there.
answers() {
    (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null
}
