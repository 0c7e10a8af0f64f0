#!/usr/bin/env bash
# User-space instructions per request of the server's own request path, from
# callgrind: repeatable on a loaded or virtual machine where wall-clock benchmarks are
# noise (and where perf has no hardware counters). The server runs under
# `valgrind --tool=callgrind` while a small client sends N requests (8 keep-alive
# connections, one request in flight each, as wrk sends them); then, per call, the
# inclusive instructions of the onion (`api::middleware::handle`), of the access
# line (`base::logger::access`), of the head's parsing (`http::request::RequestParser::
# next`), and of counting each durable record into the read index
# (`domain::index::Index::add_durable`; `Index::add` where a record's body is parsed
# again to count it). Whole-process counts are not used: timers and idle polling
# scale with wall time under valgrind, not with requests. Kernel work (TCP, io_uring,
# fdatasync) is not counted either: scripts/bench.sh's system CPU column shows it.
#
#   scripts/instructions.sh [--bin target/release/epro-ingest] [--workload submit]
#                           [--requests 800] [--durability async] [--rust-log info]
#
# Workloads: submit (the ~280-byte report), keyed (the same with a fresh
# Idempotency-Key each, decided on the one shard), health, unauthorized (401s). N is
# rounded down to a multiple of 8. KEEP=DIR keeps the callgrind file. Needs valgrind
# and python3.
#
# The server runs one shard. With two, valgrind runs the shards' threads one at a
# time and a shard parked in io_uring answers seconds late (measured: a few requests
# every 12 s), so a run does not finish; the cross-shard hop is measured in CPU time
# by scripts/bench.sh --server-cpus 0,1. A client that gets no answer in 120 s fails
# the run instead of waiting for ever.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/release/epro-ingest WORKLOAD=submit N=800 DURABILITY=async LOG=info
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --workload) WORKLOAD=$2; shift 2 ;;
    --requests) N=$2; shift 2 ;;
    --durability) DURABILITY=$2; shift 2 ;;
    --rust-log) LOG=$2; shift 2 ;;
    *) echo "instructions.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
N=$((N / 8 * 8))
. scripts/workload.sh
WORK=$(mktemp -d -p "$PWD/target" instructions.XXXXXX)   # on the real disk, not tmpfs
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${KEEP:-}" ] && cp "$WORK"/cg.* "$KEEP"/; rm -rf "$WORK"' EXIT
device_principal > "$WORK/config.toml"

cat > "$WORK/drive.py" <<'PY'
import socket, sys, threading, time
port, workload, n, token, body = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
def request(i):
    if workload == "health":
        return b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n"
    auth = "wrong" if workload == "unauthorized" else token
    key = f"Idempotency-Key: k-{time.time_ns()}-{i}\r\n" if workload == "keyed" else ""
    return (f"POST /epro/submit HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {auth}\r\n"
            f"Content-Type: application/json\r\n{key}Content-Length: {len(body)}\r\n\r\n{body}").encode()
def conn(first, count):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(120)
    buf = b""
    for i in range(first, first + count):
        s.sendall(request(i))
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].decode()
                length = int(next((l.split(":")[1] for l in head.split("\r\n") if l.lower().startswith("content-length")), "0"))
                if len(buf) >= end + 4 + length:
                    buf = buf[end + 4 + length:]
                    break
            try:
                more = s.recv(65536)
            except socket.timeout:
                failed.append(f"request {i}: no answer in 120 s")
                return
            if not more:
                failed.append(f"request {i}: the server closed the connection")
                return
            buf += more
    s.close()
failed = []
threads = [threading.Thread(target=conn, args=(c * (n // 8), n // 8)) for c in range(8)]
for t in threads: t.start()
for t in threads: t.join()
if failed:
    sys.exit("instructions.sh: " + "; ".join(failed))
PY

run() { # requests -> the callgrind file
  local n=$1 port=$((20000 + RANDOM % 20000)) out="$WORK/cg.$1"
  RUST_LOG=$LOG valgrind --tool=callgrind --callgrind-out-file="$out" \
    "$BIN" serve --config "$WORK/config.toml" --listen 127.0.0.1:$port --shards 1 \
    --data-dir "$WORK/data-$n" --init --durability "$DURABILITY" 2>"$WORK/log.$n" >/dev/null &
  local pid=$!
  for _ in $(seq 600); do   # every shard recovered and ready (slowly, under valgrind)
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
      "http://127.0.0.1:$port/readyz" 2>/dev/null && break
    sleep 0.2
  done
  python3 "$WORK/drive.py" "$port" "$WORKLOAD" "$n" "$DEVICE_TOKEN" "$REPORT_BODY"
  kill -TERM "$pid"; wait "$pid" || true
}
run "$N"
echo "$WORKLOAD, $N requests, 1 shard, durability=$DURABILITY RUST_LOG=$LOG:"
# Per function: its inclusive cost summed over its callers, over its calls.
callgrind_annotate --inclusive=yes "$WORK/cg.$N" 2>/dev/null | python3 -c '
import re, sys
wanted = ("api::middleware::handle", "base::logger::access",
          "http::request::RequestParser::next", "domain::index::Index::add",
          "domain::index::Index::add_durable")
seen = {}
for line in sys.stdin:
    m = re.match(r"\s*([\d,]+) \([^)]*\)\s+=> .*epro_ingest::(\S+) \(([\d,]+)x\)", line)
    if m and m.group(2) in wanted:
        cost, calls = seen.setdefault(m.group(2), [0, 0]), int(m.group(3).replace(",", ""))
        cost[0] += int(m.group(1).replace(",", "")); cost[1] += calls
for name in wanted:
    if name in seen:
        c, n = seen[name]
        print(f"  {name}: {c / n:.0f} instructions/call over {n} calls")
'
