#!/usr/bin/env bash
# Full-text search at scale, measured with `loadgen search` on each search
# backend in one run, side by side:
#   scripts/search-bench.sh [--quick] DIR [ARGUMENTS of loadgen search...]
# DIR holds release builds of `chat` and `loadgen`. The OpenSearch row needs
# `scripts/opensearch.sh start`; it is skipped, and says so, when nothing
# answers on 127.0.0.1:9200. Each row runs on a fresh system (a new data dir
# and a new index prefix). --quick seeds 100 chats of 100 messages and ingests 2,000/s. Exits 1
# when a row failed (the system did not start, or loadgen found a problem).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=()
if [[ "${1:-}" == "--quick" ]]; then
    quick=(--chats 100 --messages 100 --duration 3s --ingest-rate 2000 --ingest-duration 5s)
    shift
fi
dir=${1:?usage: scripts/search-bench.sh [--quick] DIR [ARGUMENTS of loadgen search...]}
shift
extra=("$@")
out=${CHAT_SEARCH_BENCH_OUT:-$(mktemp -d -t chat-search-bench.XXXXXX)}
mkdir -p "$out"
echo "== results in $out"

export CHAT_OPERATOR_KEY=op_search_bench
export RUST_LOG=warn
opensearch=127.0.0.1:9200

source scripts/lib/up.sh
trap up_stop EXIT

run=$(date +%s)
failed=0
for row in embedded opensearch; do
    env=()
    if [[ "$row" == opensearch ]]; then
        if ! answers "$opensearch"; then
            echo "-- $row: skipped, nothing answers on $opensearch (scripts/opensearch.sh start)"
            continue
        fi
        env+=("CHAT_SEARCH=opensearch://$opensearch/search-bench-$run")
    fi
    data=$(mktemp -d -t chat-search-bench-data.XXXXXX)
    if ! up_start 60 "$out/$row-up.log" "$dir/chat" "${env[@]}" CHAT_DATA_DIR="$data"; then
        echo "-- $row: the system did not become healthy: $out/$row-up.log" >&2
        up_stop
        failed=1
        continue
    fi
    echo "-- $row: loadgen search ${quick[*]} ${extra[*]}"
    "$dir/loadgen" search "${quick[@]}" "${extra[@]}" --json "$out/$row.json" \
        >"$out/$row.txt" 2>&1 || {
        echo "   (loadgen reported a failure: $out/$row.txt)"
        failed=1
    }
    grep -vE "^\s*$" "$out/$row.txt" | sed 's/^/   /' || true
    up_stop
    rm -rf "$data"
done

python3 - "$out" <<'PY'
import json, os, sys
out = sys.argv[1]
rows = {}
for row in ["embedded", "opensearch"]:
    path = os.path.join(out, f"{row}.json")
    if os.path.exists(path):
        rows[row] = json.load(open(path))
if not rows:
    sys.exit(0)
def ms(us):
    return f"{us / 1000:.1f}"
def latency(phase):
    lat = phase["latency_us"]
    return f"{ms(lat['p50'])} / {ms(lat['p99'])} / {ms(lat['max'])}"
names = list(rows)
print()
print("| | " + " | ".join(names) + " |")
print("|---|" + "---|" * len(names))
def line(label, cell):
    print(f"| {label} | " + " | ".join(cell(rows[n]) for n in names) + " |")
first = next(iter(rows.values()))
line(f"seed: {first['seed']['messages']:,} messages committed, messages/s",
     lambda r: f"{r['seed']['committed_per_second']:,.0f}")
line("seed: all searchable, messages/s indexed", lambda r: f"{r['seed']['indexed_per_second']:,.0f}")
for phase in ["chat-infix", "app-word", "app-infix"]:
    line(f"{phase}: p50 / p99 / max ms", lambda r, p=phase: latency(r[p]))
if all("lag" in r for r in rows.values()):
    line("steady ingest: offered / committed messages/s",
         lambda r: f"{r['lag']['offered_per_second']:,.0f} / {r['lag']['committed_per_second']:,.0f}")
    line("acknowledged to searchable: p50 / p99 / max ms", lambda r: latency({"latency_us": r["lag"]["probe_lag_us"]}))
    line("probes not found", lambda r: f"{r['lag']['probes_missing']} of {r['lag']['probes']}")
line("indexed / acknowledged", lambda r: f"{r['indexed']:,.0f} / {r['acknowledged']:,}")
PY
exit "$failed"
