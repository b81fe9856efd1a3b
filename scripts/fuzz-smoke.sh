#!/usr/bin/env bash
# Runs every fuzz target for a short while (FUZZ_SECONDS, default 20) from its
# seed corpus and fails on the first crash. Needs cargo-fuzz
# (`cargo install cargo-fuzz`); on a stable toolchain RUSTC_BOOTSTRAP=1 lets it
# use the nightly-only sanitizer flags.
#
#   scripts/fuzz-smoke.sh                 # every target, 20 s each
#   FUZZ_SECONDS=300 scripts/fuzz-smoke.sh bridge_wire
#
# New inputs found go to fuzz/corpus/<target>/ (not committed); crashing inputs
# to fuzz/artifacts/<target>/.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-20}"
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build -O

failed=()
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target: ${seconds}s"
    if ! cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        2>"corpus/$target.log"; then
        echo "!! $target crashed; see fuzz/artifacts/$target/ and fuzz/corpus/$target.log" >&2
        tail -n 40 "corpus/$target.log" >&2
        failed+=("$target")
        continue
    fi
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "corpus/$target.log" | sed "s/^/   /" || true
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi
echo "all targets ran without a crash"
