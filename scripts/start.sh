#!/usr/bin/env bash
# Builds epro-ingest (the quick-to-build `release` profile; production and benchmarks
# use `--profile dist`, see Cargo.toml) and starts it on the embedded defaults
# (127.0.0.1:8080, one shard per CPU, ./data, created with --init if missing). Extra
# arguments go to `serve`, and paths in them are taken from where you run this, e.g.
#   scripts/start.sh --config mine.toml --data-dir /var/lib/epro-ingest
# The server runs in the foreground: use a second terminal for curl or the tests.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

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
for arg in "$@"; do
  case "$arg" in
    --config=*) file=${arg#--config=} ;;
    *) file="" ;;
  esac
  if [ "${prev:-}" = --config ]; then file=$arg; fi
  if [ -n "$file" ] && [ ! -f "$file" ]; then
    echo "start.sh: config file $file not found (looked in $PWD)" >&2
    exit 1
  fi
  prev=$arg
done

echo "start.sh: building (the first build takes a few minutes)..." >&2
cargo build --release --locked --manifest-path "$root/Cargo.toml"

# Each shard registers 3 MiB of locked memory with io_uring; raise the soft limit to the
# hard limit when that is allowed (the server itself says what to do if it is not enough).
ulimit -l "$(ulimit -H -l)" 2>/dev/null || true

echo "start.sh: starting in the foreground (Ctrl-C stops it); test from a second terminal" >&2
exec "${CARGO_TARGET_DIR:-$root/target}/release/epro-ingest" serve --init "$@"
