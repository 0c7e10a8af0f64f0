#!/usr/bin/env bash
# Packs what scripts/bench-scale.sh needs on a machine that has no Rust toolchain, no
# wrk and no network (the lent many-core machine): the dist binaries, stripped, and
# wrk with the LuaJIT library it links, into target/device-kit (about 15 MB). There:
#
#   LD_LIBRARY_PATH=target/device-kit/lib WRK=target/device-kit/wrk \
#     scripts/bench-scale.sh --bin-dir target/device-kit
#
# The binaries link glibc dynamically: the other machine needs a glibc at least as new
# as this one's.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --profile dist --locked --features bench-servers --bins >&2
KIT=target/device-kit
rm -rf "$KIT"
mkdir -p "$KIT/lib"
for bin in epro-ingest axum-baseline glommio-floor; do
  cp "target/dist/$bin" "$KIT/$bin"
  strip "$KIT/$bin"
done
WRK_BIN=$(command -v wrk) || { echo "device-kit.sh: wrk is needed here" >&2; exit 1; }
cp "$WRK_BIN" "$KIT/wrk"
# wrk's libraries that a CUDA image may lack (LuaJIT); libc and OpenSSL are assumed.
ldd "$WRK_BIN" | awk '/luajit/ {print $3}' | xargs -r -I{} cp -L {} "$KIT/lib/"
du -sh "$KIT" >&2
echo "device-kit.sh: carry $KIT; glibc here: $(ldd --version | head -1)" >&2
