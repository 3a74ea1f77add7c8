#!/usr/bin/env bash
# Coverage-guided fuzzing of every target on stable Rust, without cargo-fuzz: builds the
# targets with libFuzzer (libfuzzer-sys) and SanitizerCoverage on Spotcheck's crates
# (sancov-rustc.sh), then runs each for SECONDS seconds on its seed corpus. New inputs go to a
# scratch corpus; a crash leaves its input in fuzz/artifacts/<target>/ and fails the run.
#
# Usage: fuzz/run.sh [SECONDS_PER_TARGET] [TARGET…]     (default 10 s, every target)
#        fuzz/run.sh --build-only                       (the targets' build, no fuzzing)
# CI runs it with the default: about a minute of fuzzing in all (.ci/run). It builds first with
# --build-only beside the tests, at the lowest priority, so that this run only fuzzes.
set -euo pipefail
cd "$(dirname "$0")"
build_only=false
if [[ ${1:-} == --build-only ]]; then
    build_only=true
    shift
fi
seconds=${1:-10}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(payload topic config csv_import rule_pack draw_record)
export RUSTC_WRAPPER=$PWD/sancov-rustc.sh
# Its own target directory: the instrumented crates must not replace the test build's.
export CARGO_TARGET_DIR=$PWD/target
cargo build --bins
if $build_only; then
    exit 0
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "artifacts/$t"
    echo "fuzz: $t for ${seconds}s"
    "target/debug/$t" -max_total_time="$seconds" -artifact_prefix="artifacts/$t/" \
        -print_final_stats=1 "$scratch/$t" "corpus/$t" 2>"$scratch/$t.log" || {
        tail -40 "$scratch/$t.log"
        echo "fuzz: $t FAILED; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    }
    grep -E "stat::number_of_executed_units|stat::new_units_added" "$scratch/$t.log" | tr '\n' ' '
    echo
done
