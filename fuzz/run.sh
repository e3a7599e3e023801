#!/usr/bin/env bash
# Runs the request-decoder fuzzer for SECONDS (default 300) and prints how many inputs it ran.
# Needs cargo-fuzz (`cargo install cargo-fuzz`); works on stable Rust without sanitizers.
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-300}"
mkdir -p corpus/request_decoder
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/autocache-fuzz-target}"
RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none request_decoder corpus/request_decoder seeds \
  -- -max_total_time="$seconds" -max_len=4096 2>&1 | grep -vE "^\"|# Uses|dictionary" | tail -n 4
