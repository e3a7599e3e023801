#!/usr/bin/env bash
# Builds and runs an AutoCache server (release build). With no arguments: 127.0.0.1:6379,
# data in ./data. Any arguments go to `autocache server` (try --help).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/autocache-target}"
cargo build --release --quiet --manifest-path "$root/Cargo.toml" -p node
exec "$CARGO_TARGET_DIR/release/autocache" server "$@"
