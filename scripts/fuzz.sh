#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time (default 60 s each) from the committed seed
# corpus in fuzz/corpus/<target>; fails on the first crash (libFuzzer leaves the input in
# fuzz/artifacts/<target>/). New corpus entries go to a scratch directory, so the tree stays clean.
# Usage: scripts/fuzz.sh [seconds-per-target] [target...]
# Installs what it needs when missing: the nightly toolchain (the sanitizer flags), cargo-fuzz,
# and a C/C++ toolchain with apt (libfuzzer-sys compiles libFuzzer).
source "$(dirname "$0")/lib.sh"

seconds="${1:-60}"
shift || true

ensure_build_tools
if ! cargo +nightly --version >/dev/null 2>&1; then
    log "installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

cd fuzz
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    # Fails, rather than run "all 0 targets", when the listing fails or lists none.
    lines_of targets cargo +nightly fuzz list
fi

# One build of every target, before any clock starts.
cargo +nightly fuzz build

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    echo "fuzz.sh: $target for ${seconds}s"
    status=0
    cargo +nightly fuzz run "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$scratch/$target.log" 2>&1 || status=$?
    grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$scratch/$target.log" || true
    if [ "$status" -ne 0 ]; then
        tail -n 60 "$scratch/$target.log" >&2
        echo "fuzz.sh: $target crashed (exit $status); reproduce with:" >&2
        echo "  cd fuzz && cargo +nightly fuzz run $target artifacts/$target/<crash-file>" >&2
        exit 1
    fi
done
echo "fuzz.sh: all ${#targets[@]} targets ran ${seconds}s each without a crash"
