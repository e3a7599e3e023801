#!/usr/bin/env bash
# Builds and runs an AutoCache server (release build). With no arguments: 127.0.0.1:6379,
# data in ./data. Any arguments go to `autocache server` (try --help).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
command -v cargo >/dev/null 2>&1 || { echo "cargo (Rust) is required: https://rustup.rs" >&2; exit 1; }
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/autocache-target}"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p node
exec "$CARGO_TARGET_DIR/release/autocache" server "$@"
