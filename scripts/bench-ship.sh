#!/usr/bin/env bash
# Measures `epro-ingest ship` into a local, throwaway PostgreSQL: records/s for a log of
# at least --records records (default 1,000,000), against a naive loop that sends one
# INSERT per row, each its own transaction, over the same connection kind (a Unix
# socket), for --naive records (default 20,000; its rate is what is compared).
#
# The log is written by the server itself (durability async, wrk for as long as it
# takes), so it is a real log. Both sides insert the same columns. Besides records/s,
# it reports CPU per record: of the shipper (or psql) and of PostgreSQL (every one of
# its processes, from /proc), so a run on a busy machine still compares.
#   scripts/bench-ship.sh [--records N] [--naive N] [--server-cpus 0] [--wrk-cpus 1]
#                         [--ship-cpus 0,1] [--bin PATH]
# --bin: an epro-ingest already built (any profile) instead of building the dist one.
# SHIP_WRAP="perf record -g -o ship.perf --" runs the shipper under a profiler.
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS=1000000 NAIVE=20000 SERVER_CPUS=0 WRK_CPUS=1 SHIP_CPUS=0,1 BIN=
while [ $# -gt 0 ]; do
  case "$1" in
    --records) RECORDS=$2; shift 2 ;;
    --naive) NAIVE=$2; shift 2 ;;
    --server-cpus) SERVER_CPUS=$2; shift 2 ;;
    --wrk-cpus) WRK_CPUS=$2; shift 2 ;;
    --ship-cpus) SHIP_CPUS=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    *) echo "bench-ship.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in wrk python3 curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench-ship.sh: $tool is needed" >&2; exit 1; }
done
PGBIN=$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")")
[ -x "$PGBIN/pg_ctl" ] || { echo "bench-ship.sh: PostgreSQL's initdb/pg_ctl are needed (apt-get install postgresql)" >&2; exit 1; }

if [ -z "$BIN" ]; then
  # The same build as scripts/bench.sh (so neither rebuilds the other's).
  cargo build --profile dist --locked --features bench-servers --bins >&2
  BIN="${CARGO_TARGET_DIR:-./target}/dist/epro-ingest"
fi
ulimit -l "$(ulimit -H -l)" 2>/dev/null || true

WORK=$(mktemp -d -p "$PWD/target" bench-ship.XXXXXX)   # the log on the real disk
PGDIR=$(mktemp -d /tmp/epro-bench-pg.XXXXXX)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDIR"
cleanup() {
  kill $(jobs -p) 2>/dev/null || true
  as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK" "$PGDIR"
}
trap cleanup EXIT
as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" -w \
  -o "-k $PGDIR -c listen_addresses='' -p 5432" start >/dev/null
CONN="host=$PGDIR port=5432 user=postgres dbname=postgres"
psql_() { as_pg "$PGBIN/psql" -X -q -h "$PGDIR" -p 5432 -U postgres -d postgres "$@"; }
# CPU seconds PostgreSQL has used: each live process's, plus what the postmaster
# collected from the backends that ended.
pg_cpu() {
  python3 - "$(head -1 "$PGDIR/data/postmaster.pid")" <<'PY'
import os, sys
pm, total = int(sys.argv[1]), 0
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    if int(pid) == pm:
        total += sum(int(f) for f in fields[11:15])   # utime stime cutime cstime
    elif int(fields[1]) == pm:
        total += int(fields[11]) + int(fields[12])
print(total / os.sysconf("SC_CLK_TCK"))
PY
}
# run_timed OUT CMD...: runs CMD (its stdin is run_timed's); writes "wall_seconds
# cpu_seconds" (its own and its children's CPU) to OUT.
cat > "$WORK/timed.py" <<'PY'
import resource, subprocess, sys, time
began = time.monotonic()
code = subprocess.call(sys.argv[2:])
wall = time.monotonic() - began
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{wall} {r.ru_utime + r.ru_stime}\n")
sys.exit(code)
PY
run_timed() { python3 "$WORK/timed.py" "$@"; }

# 1. A log of at least RECORDS records, written by the server.
cat > "$WORK/config.toml" <<'TOML'
durability = "async"
[[principals]]
id = "device-1"
token = "device-token-0123456789"
role = "device"
projects = ["*"]
TOML
cat > "$WORK/submit.lua" <<'LUA'
wrk.method = "POST"
wrk.path = "/epro/submit"
wrk.body = '{"patientId":"P-000123","projectId":"P001","siteId":"S01","reportData":{"q1":3,"q2":1,"q3":4,"painScore":6,"sleepHours":7.5,"nausea":false,"notes":"mild headache after lunch"},"timestamp":"2026-11-26T08:15:30Z"}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer device-token-0123456789"
LUA
taskset -c "$SERVER_CPUS" "$BIN" serve --init --config "$WORK/config.toml" --listen 127.0.0.1:18300 \
  --cpus "$SERVER_CPUS" --data-dir "$WORK/data" 2>"$WORK/server.log" &
SERVER=$!
for _ in $(seq 200); do curl -sf 127.0.0.1:18300/readyz >/dev/null 2>&1 && break; sleep 0.05; done
count_records() { "$BIN" verify --data-dir "$WORK/data" | awk '/records/ {s += $5} END {print s + 0}'; }
while [ "$(count_records)" -lt "$RECORDS" ]; do
  taskset -c "$WRK_CPUS" wrk -t1 -c64 -d5s -s "$WORK/submit.lua" http://127.0.0.1:18300 >/dev/null
done
kill -TERM "$SERVER"; wait "$SERVER" || true
TOTAL=$(count_records)
echo "bench-ship.sh: log of $TOTAL records" >&2

# 2. ship --once into an empty database.
PG0=$(pg_cpu)
run_timed "$WORK/ship.time" taskset -c "$SHIP_CPUS" ${SHIP_WRAP:-} \
  "$BIN" ship --data-dir "$WORK/data" --postgres "$CONN" --node bench --once 2>"$WORK/ship.log"
PG1=$(pg_cpu)
SHIPPED=$(psql_ -tA -c "SELECT count(*) FROM epro_records")
[ "$SHIPPED" = "$TOTAL" ] || { echo "bench-ship.sh: shipped $SHIPPED of $TOTAL" >&2; exit 1; }
read -r SHIP_S SHIP_CPU < "$WORK/ship.time"
SHIP_PG=$(python3 -c "print($PG1 - $PG0)")

# 3. The naive loop: the first NAIVE records, one INSERT (one transaction) per row, into
# a table of the same shape.
psql_ -c "CREATE TABLE naive_records (LIKE epro_records INCLUDING ALL)"
# export stops with EPIPE once head has its lines: expected.
{ "$BIN" export --data-dir "$WORK/data" 2>/dev/null || true; } | head -n "$NAIVE" > "$WORK/naive.jsonl"
python3 -c '
import json, sys, datetime
def lit(v):
    if v is None: return "NULL"
    return "'"'"'" + str(v).replace("'"'"'", "'"'"''"'"'") + "'"'"'"
for line in sys.stdin:
    r = json.loads(line)
    body = json.dumps(r["body"], separators=(",", ":"))
    b = r["body"] if isinstance(r["body"], dict) else {}
    at = r["receivedAt"]
    secs = datetime.datetime.fromisoformat(at[:26] + "+00:00").timestamp()
    ns = int(secs) * 10**9 + int(at[20:29])
    vals = [lit("naive"), r["shard"], r["seq"], lit(r["id"]), lit(r["kind"]), lit(at), ns, lit(r["principal"]),
            lit(b.get("submissionId")), lit(b.get("patientId")), lit(b.get("projectId")), lit(b.get("siteId")),
            "NULL", "true", lit(body) + "::jsonb", "convert_to(" + lit(body) + ", '"'"'UTF8'"'"')"]
    print("INSERT INTO naive_records VALUES (" + ", ".join(str(v) for v in vals) + ");")
' < "$WORK/naive.jsonl" > "$WORK/naive.sql"
PG0=$(pg_cpu)
PSQL=("$PGBIN/psql" -X -q -h "$PGDIR" -p 5432 -U postgres -d postgres)
[ "$(id -u)" = 0 ] && PSQL=(runuser -u postgres -- "${PSQL[@]}")
run_timed "$WORK/naive.time" taskset -c "$SHIP_CPUS" "${PSQL[@]}" < "$WORK/naive.sql" >/dev/null 2>"$WORK/naive.log"
PG1=$(pg_cpu)
INSERTED=$(psql_ -tA -c "SELECT count(*) FROM naive_records")
[ "$INSERTED" = "$NAIVE" ] || { echo "bench-ship.sh: the naive loop inserted $INSERTED of $NAIVE" >&2; head -3 "$WORK/naive.log" >&2; exit 1; }
read -r NAIVE_S NAIVE_CPU < "$WORK/naive.time"
NAIVE_PG=$(python3 -c "print($PG1 - $PG0)")

python3 - "$TOTAL" "$SHIP_S" "$SHIP_CPU" "$SHIP_PG" "$NAIVE" "$NAIVE_S" "$NAIVE_CPU" "$NAIVE_PG" \
  "$(nproc)" "$(uname -r)" "$(cat /proc/loadavg)" <<'PY'
import sys
a = sys.argv
total, ship_s, ship_cpu, ship_pg = int(a[1]), float(a[2]), float(a[3]), float(a[4])
naive, naive_s, naive_cpu, naive_pg = int(a[5]), float(a[6]), float(a[7]), float(a[8])
ship_rate, naive_rate = total / ship_s, naive / naive_s
us = lambda cpu, n: f"{cpu / n * 1e6:.1f}"
print(f"\n{a[9]} CPUs, {a[10]}; load average before the summary: {a[11]}")
print("PostgreSQL on a Unix socket, default settings.\n")
print("| method | records | seconds | records/s | client CPU µs/record | PostgreSQL CPU µs/record |")
print("|---|---:|---:|---:|---:|---:|")
print(f"| epro-ingest ship --once (COPY, 10,000 per transaction) | {total} | {ship_s:.1f} | {ship_rate:.0f} | {us(ship_cpu, total)} | {us(ship_pg, total)} |")
print(f"| naive: one INSERT per row, each its own transaction (psql) | {naive} | {naive_s:.1f} | {naive_rate:.0f} | {us(naive_cpu, naive)} | {us(naive_pg, naive)} |")
print(f"\nship / naive: {ship_rate / naive_rate:.1f}x records/s; "
      f"{(naive_cpu + naive_pg) / naive / ((ship_cpu + ship_pg) / total):.1f}x less CPU per record")
PY
