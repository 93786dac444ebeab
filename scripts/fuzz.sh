#!/usr/bin/env bash
# Fuzzes every decoder of untrusted input with cargo-fuzz (libFuzzer) on the
# stable toolchain: `-s none` is coverage-guided fuzzing without a sanitizer
# (sanitizers need nightly). ARCHITECTURE.md says what each target checks.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Defaults: 60 s, every target. Installs cargo-fuzz 0.13 if it is missing,
# builds every target once, then runs each for the given time on its corpus
# fuzz/corpus/<target> (the committed seed-* files plus what earlier runs
# found; new entries are not committed). Prints the executions per target.
# A crash leaves its input in fuzz/artifacts/<target>/ and makes the script
# exit non-zero once every target has run; replay one with
#   cargo fuzz run -s none TARGET fuzz/artifacts/TARGET/crash-...
#
# Builds into ${CARGO_TARGET_DIR:-target}/fuzz (instrumented builds share
# nothing with the others). CHAT_FUZZ_ARGS adds libFuzzer flags.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

seconds=${1:-60}
shift || true
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2
    exit 2
fi

if ! cargo fuzz --version 2>/dev/null | grep -q '^cargo-fuzz 0\.13\.'; then
    echo "== installing cargo-fuzz 0.13"
    cargo install cargo-fuzz --version '0.13.*' --locked
fi

target_dir="${CARGO_TARGET_DIR:-$root/target}/fuzz"
fuzz=(cargo fuzz)
build_flags=(-s none --target-dir "$target_dir")

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

# The engine's and the API's targets need the whole dependency tree
# (fuzz/Cargo.toml's features); the others only chat-wire and chat-token,
# whose instrumented build takes a fraction of the time. So two builds at
# most, never one per feature set: each would rebuild what the others built.
full=""
for target in "${targets[@]}"; do
    if [[ $target == client_frame || $target == engine_request || $target == rest_request ]]; then
        full=yes
    fi
done
if [[ -z "$full" ]]; then
    build_flags+=(--no-default-features)
fi

echo "== cargo fuzz build (${targets[*]})"
start_s=$SECONDS
(cd fuzz && "${fuzz[@]}" build "${build_flags[@]}")
echo "built in $((SECONDS - start_s)) s"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=()
for target in "${targets[@]}"; do
    echo "== fuzzing $target for $seconds s"
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    log="$logs/$target.log"
    status=0
    # -timeout: an input that takes a second is a hang worth reporting.
    # shellcheck disable=SC2086
    (cd fuzz && "${fuzz[@]}" run "${build_flags[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        ${CHAT_FUZZ_ARGS:-}) >"$log" 2>&1 || status=$?
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
    if [[ $status -ne 0 ]]; then
        failed+=("$target")
        tail -n 60 "$log"
        echo "$target: FAILED (exit $status) after ${executions:-?} executions; see fuzz/artifacts/$target/"
    else
        echo "$target: ${executions:-?} executions (${rate:-?}/s), corpus $corpus, no crash"
    fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
    echo "fuzzing found crashes in: ${failed[*]}" >&2
    exit 1
fi
