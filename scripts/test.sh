#!/usr/bin/env bash
# Runs the whole test suite: unit, integration (real server over real sockets and real
# files), randomized framing and doc tests. Extra arguments go to `cargo test`.
# First it type-checks every target with every feature (the axum baseline, the glommio
# floor, the criterion benches), so nothing that `cargo test` does not build can rot.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "test.sh: cargo not found. Install a Rust toolchain (https://rustup.rs) and retry." >&2
  exit 1
fi

cargo check --locked --all-targets --all-features
cargo test --locked "$@"
