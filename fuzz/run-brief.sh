#!/usr/bin/env bash
# Runs every fuzz target briefly (30 s each by default) from the committed
# corpus, for the project's test command. Installs cargo-fuzz when missing.
# Needs the nightly toolchain. A crash fails the script and leaves the input
# under fuzz/artifacts/<target>/.
#
#   fuzz/run-brief.sh            # every target, 30 s each
#   FUZZ_SECONDS=300 fuzz/run-brief.sh hll_decode
set -euo pipefail
cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-30}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz/run-brief.sh: installing the nightly toolchain (libFuzzer needs it)" >&2
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run-brief.sh: installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# New inputs go to a scratch directory; the committed corpus stays small.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    case "$target" in
        hll_decode) max_len=13000 ;;
        *) max_len=8192 ;;
    esac
    mkdir -p "$scratch/$target" "corpus/$target"
    echo "==> fuzz $target for ${seconds}s" >&2
    cargo +nightly fuzz run -O "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$seconds" -max_len="$max_len" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1
done
