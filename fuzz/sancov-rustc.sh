#!/bin/sh
# RUSTC_WRAPPER for coverage-guided fuzzing on stable Rust (fuzz/run.sh): cargo calls it as
# `sancov-rustc.sh rustc ARGS…`. Spotcheck's own crates are compiled with LLVM's
# SanitizerCoverage, the instrumentation libFuzzer steers by (the flags `cargo fuzz build
# --sanitizer none` passes, all stable `-C` options); dependencies are compiled as they are.
# No sanitizer (AddressSanitizer needs nightly): Rust's own checks (bounds, overflow in debug)
# are what turn a bug into a crash here.
case " $* " in
*" --crate-name spotcheck_"*)
    exec "$@" -Cpasses=sancov-module \
        -Cllvm-args=-sanitizer-coverage-level=4 \
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
        -Cllvm-args=-sanitizer-coverage-pc-table \
        -Cllvm-args=-sanitizer-coverage-trace-compares \
        --cfg fuzzing
    ;;
esac
exec "$@"
