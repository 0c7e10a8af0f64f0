#!/usr/bin/env bash
# User-space instructions per request of the server, from callgrind: repeatable on a
# loaded or virtual machine where wall-clock benchmarks are noise (and where perf has
# no hardware counters). The server runs under `valgrind --tool=callgrind` twice, once
# taking N requests and once 2N, from a small client (8 keep-alive connections, one
# request in flight each, as wrk sends them); the difference over N is the cost of a
# request without start-up and shutdown. Kernel work (TCP, io_uring, fdatasync) is not
# counted: scripts/bench.sh's system CPU column shows it.
#
#   scripts/instructions.sh [--bin target/release/epro-ingest] [--workload submit]
#                           [--requests 4000] [--shards 1] [--durability async]
#                           [--rust-log info]
#
# N is rounded down to a multiple of 8 (the connections). KEEP=DIR keeps the callgrind
# files, for `callgrind_annotate --inclusive=yes` (the onion, `middleware::handle`, and
# the access line, `logger::access`, per call).
# Workloads: submit (the ~280-byte report), keyed (the same with a fresh
# Idempotency-Key each), health, unauthorized (401s). Needs valgrind and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/release/epro-ingest WORKLOAD=submit N=4000 SHARDS=1 DURABILITY=async LOG=info
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN=$2; shift 2 ;;
    --workload) WORKLOAD=$2; shift 2 ;;
    --requests) N=$2; shift 2 ;;
    --shards) SHARDS=$2; shift 2 ;;
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
            buf += s.recv(65536)
    s.close()
threads = [threading.Thread(target=conn, args=(c * (n // 8), n // 8)) for c in range(8)]
for t in threads: t.start()
for t in threads: t.join()
PY

run() { # requests -> instructions of the whole run
  local n=$1 port=$((20000 + RANDOM % 20000)) out="$WORK/cg.$1"
  RUST_LOG=$LOG valgrind --tool=callgrind --callgrind-out-file="$out.%p" \
    "$BIN" serve --config "$WORK/config.toml" --listen 127.0.0.1:$port --shards "$SHARDS" \
    --data-dir "$WORK/data-$n" --durability "$DURABILITY" 2>"$WORK/log.$n" >/dev/null &
  local pid=$!
  for _ in $(seq 600); do   # every shard recovered and ready (slowly, under valgrind)
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
      "http://127.0.0.1:$port/readyz" 2>/dev/null && break
    sleep 0.2
  done
  python3 "$WORK/drive.py" "$port" "$WORKLOAD" "$n" "$DEVICE_TOKEN" "$REPORT_BODY"
  kill -TERM "$pid"; wait "$pid" || true
  awk '/^(summary|totals):/ {print $2; exit}' "$out".*
}
one=$(run "$N")
two=$(run $((2 * N)))
python3 -c "import sys; a, b, n = map(int, sys.argv[1:4]); print(f'{(b - a) / n:.0f} instructions/request ({sys.argv[4]})')" \
  "$one" "$two" "$N" "$WORKLOAD shards=$SHARDS durability=$DURABILITY RUST_LOG=$LOG"
