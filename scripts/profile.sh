#!/usr/bin/env bash
# Where the time goes: a perf profile of the CPU that runs the shard, while wrk sends
# the ~280-byte report (scripts/bench.sh's) with durability sync and async. Everything
# on that CPU is sampled: the shard, the kernel's TCP and file-system work done there,
# io_uring's workers, and idle time. Prints, per durability, the share of the CPU's
# samples by group (kernel subsystems, by a heuristic on symbol names since the profile
# is flat; this project, glommio, the allocator, SHA-256, ...) and the top symbols.
#
#   scripts/profile.sh [--server-cpu 0] [--wrk-cpus 1] [--connections 64] [--seconds 5]
#                      [--flame]
#
# --flame also records call stacks (DWARF unwinding, 499 Hz) and draws a flame graph
# per durability, target/profile/flame-<durability>.svg (needs inferno: `cargo install
# inferno`).
#
# Needs perf (Debian: linux-perf) and wrk; run as root, or with
# kernel.perf_event_paranoid <= 0. The reports go to stdout and to target/profile/.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER_CPU=0 WRK_CPUS=1 CONNECTIONS=64 SECONDS_=5 FLAME=""
while [ $# -gt 0 ]; do
  case "$1" in
    --server-cpu) SERVER_CPU=$2; shift 2 ;;
    --wrk-cpus) WRK_CPUS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --flame) FLAME=1; shift ;;
    *) echo "profile.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
TOOLS="perf wrk python3 curl"
[ -n "$FLAME" ] && TOOLS="$TOOLS inferno-collapse-perf inferno-flamegraph"
for tool in $TOOLS; do
  command -v "$tool" >/dev/null 2>&1 || { echo "profile.sh: $tool is needed" >&2; exit 1; }
done

# The same build as scripts/bench.sh (so neither rebuilds the other's).
cargo build --profile dist --locked --features bench-servers --bins >&2
BIN="${CARGO_TARGET_DIR:-./target}/dist/epro-ingest"
OUT=target/profile
mkdir -p "$OUT"
ulimit -l "$(ulimit -H -l)" 2>/dev/null || true
WORK=$(mktemp -d -p "$PWD/target" profile.XXXXXX)   # on the real disk, not tmpfs
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

. scripts/workload.sh
device_principal > "$WORK/config.toml"
submit_lua > "$WORK/submit.lua"

# Groups a `perf report` (overhead, dso, symbol) into shares, then the top symbols.
cat > "$WORK/group.py" <<'PY'
import re, sys
rows = []
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(.*)", line)
    if m:
        rows.append((float(m.group(1)), m.group(2), m.group(3), m.group(4).strip()))
KERNEL = [  # by symbol name: a heuristic, flat profile (no call graphs)
    ("kernel: idle (the CPU waits)", r"safe_halt|default_idle|cpuidle|poll_idle|do_idle|mwait"),
    ("kernel: TCP/IP", r"^(__)?(tcp|ip|inet|skb|sk_|sock|net|__sk|__dev|loopback|nf_|__netif|raw_v4|__ip|__inet|dst_|validate_xmit|__napi|napi|process_backlog)"),
    ("kernel: block and virtio (the disk)", r"iowrite|ioread|vring|virtqueue|virtblk|blk_|bio_|__blk|submit_bio|vp_notify|nvme"),
    ("kernel: ext4, jbd2, page cache", r"ext4|jbd2|filemap|folio|copy_folio|generic_perform_write|iomap|mpage|writeback|pagecache|__block_|block_|mark_buffer|balance_dirty|file_write|file_update|fdatasync|vfs_fsync|__generic_file|generic_file"),
    ("kernel: io_uring", r"^(__)?io_|io_uring|tctx|io_wq"),
    ("kernel: scheduler, interrupts, locks", r"schedul|task_switch|_raw_spin|irq|wake|enqueue|dequeue|update_|pick_|ttwu|psi_|select_task|switch_|hrtimer|tick_|rcu|__lock|lock_|ktime|timekeeping|read_tsc|native_|apic|__sysvec|sysvec|softirq|cpuacct|account"),
    ("kernel: system call entry and file lookup", r"syscall|entry_|fdget|__fget|fput|x64_sys|__x64|__se_sys|ksys|rw_verify|security_|copy_to_user|copy_from_user|_copy_|__check_object|__virt_addr|check_heap|__rseq|rseq"),
]

def group(dso, space, sym):
    if space == "k" or dso.startswith("[kernel"):
        for name, pattern in KERNEL:
            if re.search(pattern, sym):
                return name
        return "kernel: other"
    if re.search(r"malloc|free|realloc|calloc|tcache|arena|memalign", sym):
        return "allocator (glibc malloc/free)"
    if "sha2" in sym or "sha256" in sym.lower():
        return "SHA-256 (hash chain)"
    if "crc32c" in sym:
        return "CRC32C"
    if "simd_json" in sym:
        return "simd-json (validation)"
    if "glommio" in sym or "io_uring" in sym:
        return "glommio (runtime)"
    if "epro_ingest" in sym:
        return "epro-ingest"
    if re.match(r"(__)?mem(cpy|move|set|cmp)|__memcpy|__memmove|__memset", sym):
        return "memcpy/memset"
    return "other user space (libc, std, ...)"
shares = {}
for pct, dso, space, sym in rows:
    g = group(dso, space, sym)
    shares[g] = shares.get(g, 0) + pct
print("| group | share of the CPU's samples |")
print("|---|---:|")
for g, pct in sorted(shares.items(), key=lambda kv: -kv[1]):
    print(f"| {g} | {pct:.1f}% |")
print()
print("| symbol | share |")
print("|---|---:|")
for pct, dso, space, sym in sorted(rows, key=lambda r: -r[0])[:25]:
    sym = re.sub(r"::h[0-9a-f]{16}$", "", sym).replace("|", "\\|")
    print(f"| `{sym[:90]}` | {pct:.2f}% |")
PY

PORT=18480
for durability in sync async; do
  PORT=$((PORT + 1))
  taskset -c "$SERVER_CPU" "$BIN" serve --init --config "$WORK/config.toml" --listen 127.0.0.1:$PORT \
    --cpus "$SERVER_CPU" --data-dir "$WORK/data-$durability" --durability $durability \
    2>"$WORK/server-$durability.log" &
  PID=$!
  for _ in $(seq 200); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.05; done
  # Warm up, then sample the server's CPU while wrk runs.
  taskset -c "$WRK_CPUS" wrk -t1 -c"$CONNECTIONS" -d2s -s "$WORK/submit.lua" "http://127.0.0.1:$PORT" >/dev/null
  taskset -c "$WRK_CPUS" wrk -t1 -c"$CONNECTIONS" -d"$((SECONDS_ + 2))s" -s "$WORK/submit.lua" \
    "http://127.0.0.1:$PORT" > "$WORK/wrk-$durability.txt" &
  WRK=$!
  sleep 1
  RATE=2999 STACKS=""
  [ -n "$FLAME" ] && RATE=499 STACKS="--call-graph dwarf,16384"
  # shellcheck disable=SC2086
  perf record -q -F $RATE $STACKS -C "$SERVER_CPU" -o "$WORK/perf-$durability.data" \
    -- sleep "$SECONDS_" 2>/dev/null
  wait $WRK
  kill -TERM $PID; wait $PID 2>/dev/null || true
  {
    echo "### submit, durability $durability"
    echo
    echo "CPU $SERVER_CPU sampled ${SECONDS_} s at $RATE Hz; wrk -c$CONNECTIONS on CPU(s) $WRK_CPUS: $(grep -o 'Requests/sec:.*' "$WORK/wrk-$durability.txt")."
    echo
    perf report -i "$WORK/perf-$durability.data" --no-children --sort dso,sym --stdio 2>/dev/null \
      | python3 "$WORK/group.py"
    echo
  } | tee "$OUT/$durability.md"
  if [ -n "$FLAME" ]; then
    perf script -i "$WORK/perf-$durability.data" 2>/dev/null | inferno-collapse-perf \
      | inferno-flamegraph --minwidth 1 --title "submit, durability $durability (CPU $SERVER_CPU)" \
      > "$OUT/flame-$durability.svg"
    echo "profile.sh: wrote $OUT/flame-$durability.svg" >&2
  fi
done
