#!/usr/bin/env bash
# Builds epro-ingest in release mode and starts it on the embedded defaults
# (127.0.0.1:8080, one shard per CPU, ./data). Extra arguments go to `serve`,
# e.g. scripts/start.sh --config /etc/epro-ingest.toml
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null 2>&1; then
  echo "start.sh: cargo not found. Install a Rust toolchain (https://rustup.rs) and retry." >&2
  exit 1
fi
kernel=$(uname -r)
major=${kernel%%.*}; rest=${kernel#*.}; minor=${rest%%.*}
if [ "$major" -lt 5 ] || { [ "$major" -eq 5 ] && [ "$minor" -lt 8 ]; }; then
  echo "start.sh: Linux $kernel is too old: io_uring as used here needs 5.8 or newer." >&2
  exit 1
fi

cargo build --release --locked

# Each shard registers 3 MiB of locked memory with io_uring; raise the soft limit to the
# hard limit when that is allowed (the server itself says what to do if it is not enough).
ulimit -l "$(ulimit -H -l)" 2>/dev/null || true

exec ./target/release/epro-ingest serve "$@"
