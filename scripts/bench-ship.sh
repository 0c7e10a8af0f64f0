#!/usr/bin/env bash
# Measures `epro-ingest ship` into a local, throwaway PostgreSQL: records/s for a log of
# at least --records records (default 1,000,000), against a naive loop that sends one
# INSERT per row, each its own transaction, over the same connection kind (a Unix
# socket), for --naive records (default 20,000; its rate is what is compared).
#
# The log is written by the server itself (durability async, wrk for as long as it
# takes), so it is a real log. Both sides insert the same columns.
#   scripts/bench-ship.sh [--records N] [--naive N] [--server-cpus 0] [--wrk-cpus 1]
set -euo pipefail
cd "$(dirname "$0")/.."

RECORDS=1000000 NAIVE=20000 SERVER_CPUS=0 WRK_CPUS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --records) RECORDS=$2; shift 2 ;;
    --naive) NAIVE=$2; shift 2 ;;
    --server-cpus) SERVER_CPUS=$2; shift 2 ;;
    --wrk-cpus) WRK_CPUS=$2; shift 2 ;;
    *) echo "bench-ship.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in wrk python3 curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench-ship.sh: $tool is needed" >&2; exit 1; }
done
PGBIN=$(dirname "$(readlink -f "$(command -v initdb 2>/dev/null || ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")")
[ -x "$PGBIN/pg_ctl" ] || { echo "bench-ship.sh: PostgreSQL's initdb/pg_ctl are needed (apt-get install postgresql)" >&2; exit 1; }

# The same build as scripts/bench.sh (so neither rebuilds the other's).
cargo build --profile dist --locked --features bench-servers --bins >&2
BIN="${CARGO_TARGET_DIR:-./target}/dist/epro-ingest"
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
began=$(date +%s.%N)
"$BIN" ship --data-dir "$WORK/data" --postgres "$CONN" --node bench --once 2>"$WORK/ship.log"
ended=$(date +%s.%N)
SHIPPED=$(psql_ -tA -c "SELECT count(*) FROM epro_records")
[ "$SHIPPED" = "$TOTAL" ] || { echo "bench-ship.sh: shipped $SHIPPED of $TOTAL" >&2; exit 1; }
SHIP_S=$(python3 -c "print($ended - $began)")

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
began=$(date +%s.%N)
psql_ < "$WORK/naive.sql" >/dev/null
ended=$(date +%s.%N)
NAIVE_S=$(python3 -c "print($ended - $began)")

python3 - "$TOTAL" "$SHIP_S" "$NAIVE" "$NAIVE_S" "$(nproc)" "$(uname -r)" <<'PY'
import sys
total, ship_s, naive, naive_s = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
ship_rate, naive_rate = total / ship_s, naive / naive_s
print(f"\n{sys.argv[5]} CPUs, {sys.argv[6]}; PostgreSQL on a Unix socket, default settings.\n")
print("| method | records | seconds | records/s |")
print("|---|---:|---:|---:|")
print(f"| epro-ingest ship --once (COPY, 10,000 per transaction) | {total} | {ship_s:.1f} | {ship_rate:.0f} |")
print(f"| naive: one INSERT per row, each its own transaction | {naive} | {naive_s:.1f} | {naive_rate:.0f} |")
print(f"\nship / naive: {ship_rate / naive_rate:.1f}x")
PY
