#!/usr/bin/env bash
# Bounded fuzzing of mars-proto's decoders on STABLE Rust (see docs/fuzzing.md).
#
#   .ci/fuzz.sh                      # every target, 30 s each
#   FUZZ_SECONDS=20 .ci/fuzz.sh      # 1..60 s per target
#   FUZZ_TARGETS=frame_decode .ci/fuzz.sh
#
# Installs cargo-fuzz if missing, seeds fuzz/corpus/<target>/ from the shared
# wire vectors (<repo>/../shared/vectors, or $MARS_VECTORS), builds the targets
# without a sanitizer (what stable rustc supports; overflow checks and
# debug assertions on), runs each for the bounded time, and exits non-zero if
# any target crashes, panics, times out or runs out of memory. Crashing
# inputs are left in fuzz/artifacts/<target>/ and printed in hex.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
if ! [[ "$FUZZ_SECONDS" =~ ^[0-9]+$ ]] || ((FUZZ_SECONDS < 1 || FUZZ_SECONDS > 60)); then
    echo "fuzz.sh: FUZZ_SECONDS must be an integer in 1..60 (got '$FUZZ_SECONDS')" >&2
    exit 2
fi
VECTORS="${MARS_VECTORS:-$ROOT/../shared/vectors}"
read -r -a TARGETS <<<"${FUZZ_TARGETS:-frame_decode descriptor_validate node_input quic_host}"
# Flags shared by build and run, so `run` does not rebuild differently.
BUILD_FLAGS=(--sanitizer none --debug-assertions)
LOG_DIR="$ROOT/fuzz/target/fuzz-logs"

started=$SECONDS
step() { printf '\n== %s (t=%ds)\n' "$*" "$((SECONDS - started))"; }

step "cargo-fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
cargo fuzz --version
rustc --version

step "seed corpora from $VECTORS"
python3 fuzz/seed_corpus.py "$VECTORS" fuzz/corpus

step "build (${BUILD_FLAGS[*]})"
cargo fuzz build "${BUILD_FLAGS[@]}"

mkdir -p "$LOG_DIR"
failed=()
summary=()
for target in "${TARGETS[@]}"; do
    step "run $target for ${FUZZ_SECONDS}s"
    log="$LOG_DIR/$target.log"
    marker="$LOG_DIR/$target.start"
    : >"$marker"
    # -timeout: an input taking over 10 s counts as a hang (a failure).
    if cargo fuzz run "$target" "${BUILD_FLAGS[@]}" -- \
        -max_total_time="$FUZZ_SECONDS" \
        -timeout=10 \
        -rss_limit_mb=2048 \
        -dict=fuzz/mars.dict \
        -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    else
        status=FAILED
        failed+=("$target")
        echo "--- last 60 lines of $log"
        tail -n 60 "$log"
        while IFS= read -r artifact; do
            echo "--- crashing input $artifact ($(wc -c <"$artifact") bytes), hex:"
            od -An -tx1 -v "$artifact" | tr -d ' \n'
            echo
            echo "reproduce: cargo fuzz run $target ${BUILD_FLAGS[*]} $artifact"
        done < <(find "fuzz/artifacts/$target" -type f -newer "$marker" 2>/dev/null)
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
    corpus=$(find "fuzz/corpus/$target" -type f 2>/dev/null | wc -l || true)
    line="$target: $status, ${runs:-?} execs, ${rate:-?} execs/s, corpus $corpus files (log: ${log#"$ROOT"/})"
    echo "$line"
    summary+=("$line")
done

step "summary"
printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
    echo "fuzz.sh: FAILED: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: all targets ran ${FUZZ_SECONDS}s without a crash (total $((SECONDS - started))s)"
