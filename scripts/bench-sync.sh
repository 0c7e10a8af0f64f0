#!/usr/bin/env bash
# The durable path up close: for epro-ingest with durability sync (and async, for the
# ratio), runs wrk against one shard and reads /metrics before and after, to report
# req/s, server CPU µs/request, records per write group, groups (fdatasyncs) per second
# and the mean write + fdatasync time. --against BIN runs an older binary in the same
# alternating rounds (an A/B of a change to the sync path).
#
#   scripts/bench-sync.sh [--connections 64] [--pipeline 1] [--segment-bytes 67108864]
#                         [--duration 5] [--rounds 3] [--against BIN]
#
# Server on CPU 0, wrk on CPU 1 (a 2-core machine). Small --segment-bytes make runs
# rotate segments often; --pipeline 4 sends four requests at a time per connection.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNECTIONS=64 PIPELINE=1 SEGMENT=67108864 DURATION=5 ROUNDS=3 AGAINST=""
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) CONNECTIONS=$2; shift 2 ;;
    --pipeline) PIPELINE=$2; shift 2 ;;
    --segment-bytes) SEGMENT=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --against) AGAINST=$(realpath "$2"); shift 2 ;;
    *) echo "bench-sync.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null 2>&1 || { echo "bench-sync.sh: wrk is needed (apt-get install wrk)." >&2; exit 1; }

# The same build as scripts/bench.sh (so neither rebuilds the other's).
cargo build --profile dist --locked --features bench-servers --bins >&2
BIN="${CARGO_TARGET_DIR:-./target}/dist/epro-ingest"
ulimit -l "$(ulimit -H -l)" 2>/dev/null || true
WORK=$(mktemp -d -p "$PWD/target" bench-sync.XXXXXX)   # on the real disk
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
. scripts/workload.sh
{ echo "segment_bytes = $SEGMENT"; echo; device_principal; } > "$WORK/config.toml"
cat > "$WORK/submit.lua" <<LUA
local body = [[$REPORT_BODY]]
init = function(args)
  local r = {}
  for i = 1, $PIPELINE do
    r[i] = wrk.format("POST", "/epro/submit", {["Content-Type"] = "application/json", ["Authorization"] = "Bearer $DEVICE_TOKEN"}, body)
  end
  req = table.concat(r)
end
request = function() return req end
LUA

metric() { # text name -> its value summed over shards
  awk -v n="$2" '$1 == n || index($1, n "{") == 1 {s += $2} END {print s + 0}' <<<"$1"
}

run() { # label binary durability
  local label=$1 bin=$2 durability=$3 port=$((19200 + RANDOM % 500)) data
  data=$(mktemp -d -p "$WORK" data.XXXX)
  taskset -c 0 "$bin" serve --init --config "$WORK/config.toml" --listen 127.0.0.1:$port --cpus 0 \
    --data-dir "$data" --durability "$durability" 2>"$WORK/server.log" &
  local pid=$!
  for _ in $(seq 200); do curl -sf "127.0.0.1:$port/readyz" >/dev/null 2>&1 && break; sleep 0.05; done
  taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d1s -s "$WORK/submit.lua" "http://127.0.0.1:$port" >/dev/null
  local m0 m1 before after out
  m0=$(curl -s "127.0.0.1:$port/metrics")
  before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(taskset -c 1 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" -s "$WORK/submit.lua" "http://127.0.0.1:$port")
  after=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  m1=$(curl -s "127.0.0.1:$port/metrics")
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$data"
  local n g0 g1 r0 r1 s0 s1
  n=$(grep -oP '\d+(?= requests in)' <<<"$out")
  g0=$(metric "$m0" epro_log_group_records_count); g1=$(metric "$m1" epro_log_group_records_count)
  r0=$(metric "$m0" epro_log_group_records_sum); r1=$(metric "$m1" epro_log_group_records_sum)
  s0=$(metric "$m0" epro_log_sync_duration_seconds_sum); s1=$(metric "$m1" epro_log_sync_duration_seconds_sum)
  python3 - "$label" "$n" "$DURATION" "$((after - before))" "$(getconf CLK_TCK)" "$g0" "$g1" "$r0" "$r1" "$s0" "$s1" <<'PY'
import sys
label, n, dur, ticks, tck, g0, g1, r0, r1, s0, s1 = sys.argv[1:]
n, dur, ticks, tck = int(n), float(dur), int(ticks), int(tck)
g = float(g1) - float(g0); r = float(r1) - float(r0); s = float(s1) - float(s0)
print(f"| {label} | {n / dur:.0f} | {ticks * 1e6 / tck / max(n, 1):.2f} | {r / max(g, 1):.1f} | {g / dur:.0f} | {s / max(g, 1) * 1e6:.0f} |")
PY
}

echo "Server on CPU 0, wrk -t1 -c$CONNECTIONS (pipeline $PIPELINE) -d${DURATION}s on CPU 1, segment_bytes $SEGMENT, $ROUNDS rounds."
echo
echo "| server | req/s | CPU µs/req | records/group | groups/s | mean write+fdatasync µs |"
echo "|---|---:|---:|---:|---:|---:|"
for _ in $(seq "$ROUNDS"); do
  run "ours, sync" "$BIN" sync
  [ -n "$AGAINST" ] && run "against, sync" "$AGAINST" sync
  run "ours, async" "$BIN" async
done
