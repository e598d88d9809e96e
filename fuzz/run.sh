#!/usr/bin/env bash
# Builds the fuzz targets and runs each for SECONDS (default 30) over its committed corpus
# (fuzz/corpus/TARGET) and crash reproducers (fuzz/regressions/TARGET); exits 1 if a target
# crashes, panics, hangs (10 s on one input) or runs out of memory (2 GiB). Needs the nightly
# toolchain; installs cargo-fuzz when it is missing. New inputs go to a temporary folder: the
# committed corpora are only read (see the README's "Fuzzing" to grow them).
#
#   fuzz/run.sh            # 30 s per target
#   fuzz/run.sh 600        # 10 minutes per target
#   FUZZ_TARGETS="expr spec" fuzz/run.sh 60
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-30}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo +nightly install cargo-fuzz --locked
fi
# Release code with debug assertions and overflow checks; no sanitizer (safe Rust, and the
# build and the runs take half the time).
build=(-O -a --sanitizer none)
cargo +nightly fuzz build "${build[@]}"
targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in $targets; do
    mkdir -p "corpus/$t" "regressions/$t" "$scratch/$t"
    log="$scratch/$t.log"
    if cargo +nightly fuzz run "${build[@]}" "$t" "$scratch/$t" "corpus/$t" "regressions/$t" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)"
        echo "fuzz: $t: ok, ${runs:-?} runs in ${seconds} s"
    else
        failed+=("$t")
        echo "fuzz: $t: FAILED (reproducer in fuzz/artifacts/$t/)"
        tail -n 60 "$log"
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: failed: ${failed[*]}"
    exit 1
fi
