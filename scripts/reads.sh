#!/usr/bin/env bash
# The read side of the persistence API, measured with `loadgen reads` on
# each store with and without the Redis read cache, in one run:
#   scripts/reads.sh [--quick] DIR [ARGUMENTS of loadgen reads...]
# DIR holds release builds of `chat` and `loadgen`. The Redis rows need
# `scripts/redis.sh start`, the Cassandra rows `scripts/cassandra.sh start`;
# a row whose server does not answer is skipped and says so. Each row runs
# on a fresh system (a new data dir, keyspace and cache namespace).
set -euo pipefail
cd "$(dirname "$0")/.."

duration=10s
if [[ "${1:-}" == "--quick" ]]; then
    duration=3s
    shift
fi
dir=${1:?usage: scripts/reads.sh [--quick] DIR [ARGUMENTS of loadgen reads...]}
shift
extra=("$@")
out=${CHAT_READS_OUT:-$(mktemp -d -t chat-reads.XXXXXX)}
mkdir -p "$out"
echo "== results in $out"

export CHAT_OPERATOR_KEY=op_reads_suite
export RUST_LOG=warn
redis=redis://127.0.0.1:6390
cassandra=127.0.0.1:9042

source scripts/lib/up.sh
trap up_stop EXIT

run=$(date +%s)
for row in embedded embedded+redis cassandra cassandra+redis; do
    env=()
    case "$row" in
        cassandra*)
            if ! answers "$cassandra"; then
                echo "-- $row: skipped, nothing answers on $cassandra (scripts/cassandra.sh start)"
                continue
            fi
            env+=("CHAT_STORE=scylla://$cassandra/reads_${run}_${row//+/_}")
            ;;
    esac
    case "$row" in
        *+redis)
            if ! answers "${redis#redis://}"; then
                echo "-- $row: skipped, nothing answers on ${redis#redis://} (scripts/redis.sh start)"
                continue
            fi
            env+=("CHAT_REDIS_URL=$redis" "CHAT_CACHE_NAMESPACE=reads-$run-${row//+/-}")
            ;;
    esac
    data=$(mktemp -d -t chat-reads-data.XXXXXX)
    if ! up_start 30 "$out/$row-up.log" "$dir/chat" "${env[@]}" CHAT_DATA_DIR="$data"; then
        echo "-- $row: the system did not become healthy: $out/$row-up.log" >&2
        up_stop
        continue
    fi
    echo "-- $row: loadgen reads --duration $duration ${extra[*]}"
    "$dir/loadgen" reads --duration "$duration" "${extra[@]}" --json "$out/$row.json" \
        >"$out/$row.txt" 2>&1 || echo "   (loadgen reported a failure: $out/$row.txt)"
    grep -E "history|feed|cache" "$out/$row.txt" | sed 's/^/   /' || true
    up_stop
    rm -rf "$data"
done

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
def ms(us):
    return f"{us / 1000:.2f}"
print()
print("| store | history page of 100: p50 / p99 / p99.9 ms, requests/s | feed of 50 over 50 chats: p50 / p99 / p99.9 ms, requests/s |")
print("|---|---|---|")
for row in ["embedded", "embedded+redis", "cassandra", "cassandra+redis"]:
    path = os.path.join(out, f"{row}.json")
    if not os.path.exists(path):
        continue
    data = json.load(open(path))
    cells = []
    for phase in ["history", "feed"]:
        p = data[phase]
        lat = p["latency_us"]
        rate = p["requests"] / max(p["seconds"], 1e-9)
        cells.append(f"{ms(lat['p50'])} / {ms(lat['p99'])} / {ms(lat['p999'])}, {rate:,.0f}/s")
    print(f"| {row} | {cells[0]} | {cells[1]} |")
PY
