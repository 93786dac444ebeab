#!/usr/bin/env bash
# Runs the model-based concurrency test (chat/tests/model.rs) with many
# seeds and reports the seeds that failed, with their logs kept.
#
#   scripts/model.sh            seeds 1..50
#   scripts/model.sh 200        seeds 1..200
#   scripts/model.sh 40..80     seeds 40..80
#   scripts/model.sh 3 17 99    those seeds
#
# CHAT_MODEL_OPS sets the operations per run (the test's default otherwise).
# A failed seed's whole output (operation log, violations) is kept in
# CHAT_MODEL_LOGS (a new temporary directory by default); replay one with
#   CHAT_MODEL_SEED=<seed> cargo test -p chat --test model -- --nocapture
# The interleaving of the clients is the machine's, so a race may need a
# few replays of its seed to show again.
set -euo pipefail
cd "$(dirname "$0")/.."

seeds=()
if [[ $# -eq 0 ]]; then
    seeds=($(seq 1 50))
elif [[ $# -eq 1 && "$1" =~ ^([0-9]+)\.\.([0-9]+)$ ]]; then
    seeds=($(seq "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"))
elif [[ $# -eq 1 && "$1" =~ ^[0-9]+$ ]]; then
    seeds=($(seq 1 "$1"))
else
    for seed in "$@"; do
        if [[ ! "$seed" =~ ^[0-9]+$ ]]; then
            echo "not a seed: $seed (see the usage at the top of $0)" >&2
            exit 2
        fi
        seeds+=("$seed")
    done
fi

logs="${CHAT_MODEL_LOGS:-$(mktemp -d -t chat-model.XXXXXX)}"
mkdir -p "$logs"

echo "== building the model test"
# The test binary, built once: cargo names it in its JSON messages (with
# the chat binary it starts, when that was built too).
binary=$(cargo test -p chat --test model --no-run --locked --message-format=json |
    grep -o '"executable":"[^"]*/deps/model-[^"]*"' | tail -n 1 | cut -d'"' -f4)
if [[ -z "$binary" ]]; then
    echo "could not find the model test's binary" >&2
    exit 1
fi

failed=()
started=$SECONDS
for seed in "${seeds[@]}"; do
    log="$logs/seed-$seed.log"
    if CHAT_MODEL_SEED="$seed" "$binary" --nocapture >"$log" 2>&1; then
        echo "seed $seed: ok ($(grep -o '[0-9]* messages' "$log" | head -n 1))"
        rm -f "$log"
    else
        failed+=("$seed")
        echo "seed $seed: FAILED, $(grep -c '^VIOLATION' "$log" || true) violations, log $log"
        grep -m 5 '^VIOLATION' "$log" | sed 's/^/    /' || true
    fi
done

echo "== ${#seeds[@]} seeds in $((SECONDS - started)) s: ${#failed[@]} failed"
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "failed seeds: ${failed[*]} (logs in $logs)"
    exit 1
fi
rmdir "$logs" 2>/dev/null || true
