#!/usr/bin/env bash
# The latency suite of docs/BENCHMARKS.md, against one or more builds in one
# run, so that their numbers are comparable on this shared, noisy machine:
# for each scenario, each build in turn on a fresh `chat up` (embedded
# store, 2 shards), all driven by one load generator.
#
#   scripts/latency.sh [--quick] [--only LABEL,...] [--loadgen BIN] NAME=DIR...
#   scripts/latency.sh base=/tmp/base new=target/release
#   scripts/latency.sh --only reconnect-200x500 new=target/release
#
# Each DIR holds a `chat` binary. The load generator is --loadgen, or the
# `loadgen` in the last DIR. --quick runs each scenario for a few seconds.
# Results: one JSON file per build and scenario in $CHAT_LATENCY_OUT (default
# a temp dir, printed) and a table on stdout. Needs python3 for the table.
set -euo pipefail
cd "$(dirname "$0")/.."

duration=20
loadgen=""
only=""
builds=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) duration=5 ;;
        --loadgen) loadgen=$2; shift ;;
        --only) only=",$2,"; shift ;;
        *=*) builds+=("$1") ;;
        *) echo "usage: scripts/latency.sh [--quick] [--only LABEL,...] [--loadgen BIN] NAME=DIR..." >&2; exit 2 ;;
    esac
    shift
done
if [[ ${#builds[@]} -eq 0 ]]; then
    echo "usage: scripts/latency.sh [--quick] [--only LABEL,...] [--loadgen BIN] NAME=DIR..." >&2
    exit 2
fi
if [[ -z "$loadgen" ]]; then
    loadgen="${builds[-1]#*=}/loadgen"
fi
out=${CHAT_LATENCY_OUT:-$(mktemp -d -t chat-latency.XXXXXX)}
mkdir -p "$out"
echo "== results in $out"
# Pending writeback (a build just finished, say) makes fsyncs, and so every
# commit, wait behind it: flush it before measuring.
sync

export CHAT_OPERATOR_KEY=op_latency_suite
# The load generator's senders exceed the per-connection default of 200/s.
export CHAT_SENDS_PER_SECOND_MAX=100000
export RUST_LOG=warn

# name|loadgen arguments
scenarios=(
    "fanout-1000-at-100|fanout --members 1000 --publishers 4 --rate 100 --duration ${duration}s"
    "fanout-1000-at-100-reads-100|fanout --members 1000 --publishers 4 --rate 100 --read-rate 100 --duration ${duration}s"
    "rooms-1000x10-at-1000|rooms --chats 1000 --members 10 --rate 1000 --duration ${duration}s"
    "http-publish-at-1000|http-publish --rate 1000 --receivers 100 --duration ${duration}s"
    "reconnect-200x500|reconnect --clients 200 --missed 500"
    "fanout-10000-flat-out|fanout --members 10000 --publishers 4 --duration ${duration}s"
    "http-1000-members-4-in-flight|http-publish --rate 1000000 --receivers 1000 --concurrency 4 --duration ${duration}s"
)

source scripts/lib/up.sh
trap up_stop EXIT

# Builds take turns per scenario, each on a fresh system and data dir, so
# that a change in the machine during the run (a neighbour's disk load, say)
# falls on every build alike.
start_system() {
    local name=$1 dir=$2 label=$3
    data=$(mktemp -d -t chat-latency-data.XXXXXX)
    up_start 20 "$out/$name-$label-up.log" "$dir/chat" CHAT_DATA_DIR="$data" \
        || echo "   $name did not become healthy: $out/$name-$label-up.log" >&2
}

for scenario in "${scenarios[@]}"; do
    label=${scenario%%|*}
    if [[ -n "$only" && "$only" != *",$label,"* ]]; then
        continue
    fi
    read -r -a arguments <<<"${scenario#*|}"
    for build in "${builds[@]}"; do
        name=${build%%=*}
        dir=${build#*=}
        start_system "$name" "$dir" "$label"
        echo "-- $name $label: loadgen ${arguments[*]}"
        "$loadgen" "${arguments[@]}" --json "$out/$name-$label.json" \
            >"$out/$name-$label.txt" 2>&1 || echo "   (loadgen reported a failure: $out/$name-$label.txt)"
        grep -E "latency|publish answer|deliveries|commit|of it|reactor lag|check|caught up" \
            "$out/$name-$label.txt" | sed 's/^/   /' || true
        up_stop
        rm -rf "$data"
        sync
    done
done

python3 - "$out" "${builds[@]%%=*}" <<'EOF'
import json, os, sys

out, names = sys.argv[1], sys.argv[2:]

def ms(us):
    return "-" if us is None or isinstance(us, str) else f"{us / 1000:.1f}"

def row(data):
    lat = data.get("latency_us") or {}
    pub = data.get("publish_latency_us") or {}
    eng = data.get("engine_metrics_delta") or {}
    parts = [
        f"{data.get('deliveries_per_sec', 0):,.0f}/s",
        f"{ms(lat.get('p50'))}/{ms(lat.get('p99'))}/{ms(lat.get('p999'))}",
        f"{ms(pub.get('p50'))}/{ms(pub.get('p99'))}" if pub else "-",
        f"{ms(eng.get('chat_engine_commit_latency_us_p99'))} ({ms(eng.get('chat_engine_commit_api_us_p99'))})",
        f"{ms(eng.get('chat_engine_reactor_lag_us_p99'))}",
        f"{data.get('all_caught_up_ms') or '-'}",
        f"lost {data.get('lost')} dup {data.get('duplicates')}",
    ]
    return parts

print()
print("| scenario | build | deliveries | latency p50/p99/p99.9 ms | publish answer p50/p99 ms "
      "| commit p99 ms (API p99) | reactor lag p99 ms | all caught up ms | check |")
print("|---|---|---|---|---|---|---|---|---|")
labels = sorted({f.split("-", 1)[1][:-5] for f in os.listdir(out) if f.endswith(".json")})
for label in labels:
    for name in names:
        path = os.path.join(out, f"{name}-{label}.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            data = json.load(f)
        print(f"| {label} | {name} | " + " | ".join(row(data)) + " |")
EOF
