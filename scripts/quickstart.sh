#!/usr/bin/env bash
# The README's quickstart as a script: start a server on a fresh data directory, take
# the admin token it generated, submit a report, read it back by the id the answer
# gave, verify the log, stop. It uses the binary scripts/start.sh builds (or $EPRO_INGEST)
# and a free port, so it runs beside a server on 8080. tests/quickstart.rs runs it and
# fails when the README no longer shows the lines between the markers exactly.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${EPRO_INGEST:-${CARGO_TARGET_DIR:-$root/target}/release/epro-ingest}
if [ ! -x "$bin" ]; then
  echo "quickstart.sh: $bin not found: run scripts/start.sh once (it builds it) or set EPRO_INGEST" >&2
  exit 1
fi
command -v curl >/dev/null || { echo "quickstart.sh: curl not found: install it" >&2; exit 1; }
# io_uring's locked memory, as scripts/start.sh raises it.
ulimit -l "$(ulimit -H -l)" 2>/dev/null || true
# On a failure part-way: stop the server and show the end of its log.
trap 'rc=$?; if [ $rc -ne 0 ] && [ -n "${server:-}" ]; then
  kill "$server" 2>/dev/null || true; tail -n 3 "$data.log" >&2 || true; fi' EXIT

# --- quickstart
# Start on embedded defaults in a fresh data directory; port 0 takes a free port,
# which the log names ("listening on ADDR").
bin=${bin:-target/release/epro-ingest}    # the binary scripts/start.sh builds
data=$(mktemp -d)/data
"$bin" serve --init --data-dir "$data" --listen 127.0.0.1:0 2>"$data.log" &
server=$!
until addr=$(sed -n 's/.*listening on //p' "$data.log") && [ -n "$addr" ] &&
  "$bin" probe --addr "$addr" 2>/dev/null; do
  kill -0 $server    # the server died: its reason is the last line of $data.log
  sleep 0.1
done

# The admin token the server generated (mode 0600); no shared default secret.
token=$(cat "$data/admin.token")

# Submit a report; the answer carries the record's id.
answer=$(curl -sf "http://$addr/epro/submit" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' \
  -d '{"patientId":"P-000123","projectId":"P001","siteId":"S01","reportData":{"q1":3,"painScore":6}}')
echo "$answer"    # {"status":"success","message":"report received","id":"s0-1","receivedAt":"..."}
id=$(echo "$answer" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')

# Read it back by that id: the body exactly as it was sent.
curl -sf "http://$addr/api/v1/records/$id" -H "Authorization: Bearer $token"
echo

# Check every record and the hash chain (verify only reads: the server may run).
"$bin" verify --data-dir "$data"

# Stop: SIGTERM drains, syncs every log and exits 0.
kill -TERM $server
wait $server
# --- end of quickstart
