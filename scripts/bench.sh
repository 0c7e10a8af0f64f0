#!/usr/bin/env bash
# Side-by-side benchmark: epro-ingest (durability async and sync) against the axum
# baseline (buffered and fdatasync-per-request) and a do-nothing glommio responder, on
# the same pinned CPUs, servers run in alternation for several rounds (these machines
# are noisy). Prints a markdown table of medians and the ratios ours/axum.
#
#   scripts/bench.sh [--server-cpus 0] [--wrk-cpus 1] [--connections 64]
#                    [--duration 5] [--rounds 3] [--threads 1]
#                    [--against BIN] [--servers "ours-async ours-sync ..."]
#                    [--workloads "submit keyed ..."] [--bin-dir DIR]
#
# Defaults fit a 2-core machine: the server on CPU 0, wrk on CPU 1.
# --against BIN adds base-async and base-sync: another epro-ingest binary (say, a
# dist build of an earlier commit) in the same alternating rounds, for an A/B of a
# change. --servers picks which servers run (default: every one). BENCH_KEEP=FILE keeps
# the per-round rows (server, workload, req/s, p50, p99, CPU µs/req, non-2xx, user and
# system CPU µs/req).
# --workloads keeps only those workloads (submit, keyed, route, health). --bin-dir runs
# the binaries in DIR instead of building them (a machine with no Rust toolchain, such
# as the lent many-core one: see scripts/bench-scale.sh); WRK=PATH names the wrk to run.
# The report goes to stdout and, with an SVG chart of it, into --out DIR (default
# target/bench): results.md and chart.svg.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVER_CPUS=0 WRK_CPUS=1 CONNECTIONS=64 DURATION=5 ROUNDS=3 THREADS=1 AGAINST="" SERVERS=""
OUT=target/bench WORKLOADS="" BIN_DIR="" WRK=${WRK:-wrk}
while [ $# -gt 0 ]; do
  case "$1" in
    --server-cpus) SERVER_CPUS=$2; shift 2 ;;
    --wrk-cpus) WRK_CPUS=$2; shift 2 ;;
    --connections) CONNECTIONS=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --against) AGAINST=$(realpath "$2"); shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --workloads) WORKLOADS=$2; shift 2 ;;
    --bin-dir) BIN_DIR=$(realpath "$2"); shift 2 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
SHARDS=$(echo "$SERVER_CPUS" | tr ',' '\n' | wc -l)
if [ -z "$SERVERS" ]; then
  SERVERS="ours-async axum-buffered ours-sync axum-durable floor"
  [ -n "$AGAINST" ] && SERVERS="$SERVERS base-async base-sync"
fi
case " $SERVERS " in
  *" base-"*) [ -x "$AGAINST" ] || { echo "bench.sh: base-* servers need --against BIN" >&2; exit 2; } ;;
esac

if [ "$WRK" = wrk ] && ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "bench.sh: installing wrk" >&2
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null 2>&1 && apt-get install -y wrk >/dev/null; }
  fi
  command -v wrk >/dev/null 2>&1 || {
    echo "bench.sh: wrk is needed: install it (Debian/Ubuntu: apt-get install wrk) and retry." >&2
    exit 1
  }
fi
command -v python3 >/dev/null 2>&1 || { echo "bench.sh: python3 is needed for the report." >&2; exit 1; }

if [ -z "$BIN_DIR" ]; then
  # The fully optimized profile, as deployed (see Cargo.toml).
  cargo build --profile dist --locked --features bench-servers --bins >&2
  BIN_DIR="${CARGO_TARGET_DIR:-./target}/dist"
fi
ulimit -l "$(ulimit -H -l)" 2>/dev/null || true

WORK=$(mktemp -d -p "$PWD/target" bench.XXXXXX)   # on the real disk, not tmpfs
trap 'kill $(jobs -p) 2>/dev/null || true; [ -n "${BENCH_KEEP:-}" ] && cp "$WORK/results.tsv" "$BENCH_KEEP"; rm -rf "$WORK"' EXIT
. scripts/workload.sh
ADMIN=admin-token-0123456789
{
  device_principal
  cat <<TOML

[[principals]]
id = "admin-1"
token = "$ADMIN"
role = "admin"
projects = ["*"]
TOML
} > "$WORK/config.toml"

# The report of scripts/workload.sh. The keyed workload sends the same body with a
# fresh Idempotency-Key per request (padded to the length of the submissionId it
# replaces); a repeated submissionId would be a retry, answered from the first.
submit_lua > "$WORK/submit.lua"
cat "$WORK/submit.lua" > "$WORK/keyed.lua"
cat >> "$WORK/keyed.lua" <<'LUA'
math.randomseed(os.time() + math.floor(os.clock() * 1e6))
local prefix = string.format("%08x", math.random(0, 0x7fffffff))
local n = 0
local headers = {}
for name, value in pairs(wrk.headers) do headers[name] = value end
request = function()
  n = n + 1
  headers["Idempotency-Key"] = prefix .. "-" .. n
  return wrk.format(nil, nil, headers, nil)
end
LUA
cat > "$WORK/route.lua" <<LUA
wrk.method = "GET"
wrk.path = "/api/v1/users/device-1/permissions"
wrk.headers["Authorization"] = "Bearer $ADMIN"
LUA
cat > "$WORK/health.lua" <<LUA
wrk.method = "GET"
wrk.path = "/healthz"
LUA

PORT=18080
start() { # name -> sets PID, URL
  local name=$1 data="$WORK/data-$1-$RANDOM"
  PORT=$((PORT + 1))
  case "$name" in
    ours-async|ours-sync|base-async|base-sync)
      local bin="$BIN_DIR/epro-ingest" init=--init
      case "$name" in base-*) bin=$AGAINST ;; esac
      # An older build to compare against may predate --init (and create the dir itself).
      "$bin" serve --help | grep -q -- --init || init=""
      taskset -c "$SERVER_CPUS" "$bin" serve $init --config "$WORK/config.toml" \
        --listen 127.0.0.1:$PORT --cpus "$SERVER_CPUS" --data-dir "$data" \
        --durability "${name#*-}" 2>"$WORK/$name.log" &
      ;;
    axum-buffered|axum-durable)
      local flag=""; [ "$name" = axum-durable ] && flag=--durable
      taskset -c "$SERVER_CPUS" "$BIN_DIR/axum-baseline" --config "$WORK/config.toml" \
        --listen 127.0.0.1:$PORT --workers "$SHARDS" --data-dir "$data" $flag 2>"$WORK/$name.log" &
      ;;
    floor)
      taskset -c "$SERVER_CPUS" "$BIN_DIR/glommio-floor" --listen 127.0.0.1:$PORT \
        --cpus "$SERVER_CPUS" 2>"$WORK/$name.log" &
      ;;
  esac
  PID=$!
  URL=http://127.0.0.1:$PORT
  for _ in $(seq 200); do
    ready "$URL/readyz" && return 0   # ready: every shard recovered
    sleep 0.05
  done
  echo "bench.sh: $name did not start:" >&2; cat "$WORK/$name.log" >&2; exit 1
}

stop() { kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }

# 200 from URL? With curl, or Python where curl is missing.
ready() {
  if command -v curl >/dev/null 2>&1; then
    curl -sf "$1" >/dev/null 2>&1
  else
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$1" 2>/dev/null
  fi
}

# utime and stime: user-space work (ours) apart from the kernel's (TCP, io_uring, disk).
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

measure() { # server workload round -> appends a row to results.tsv
  local name=$1 workload=$2 before after out
  before=$(cpu_ticks "$PID")
  out=$(taskset -c "$WRK_CPUS" "$WRK" -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
        -s "$WORK/$workload.lua" "$URL")
  after=$(cpu_ticks "$PID")
  echo "$out" > "$WORK/wrk-$name-$workload-$3.txt"
  python3 "$WORK/parse.py" "$name" "$workload" "$before" "$after" "$TCK" <<<"$out" >> "$WORK/results.tsv"
}

# Parses one wrk run: req/s, p50 and p99 (µs), server CPU µs per request (all, user, system).
cat > "$WORK/parse.py" <<'PY'
import re, sys
name, workload, tck = sys.argv[1], sys.argv[2], int(sys.argv[5])
before, after = [int(t) for t in sys.argv[3].split()], [int(t) for t in sys.argv[4].split()]
user, system = after[0] - before[0], after[1] - before[1]
ticks = user + system
text = sys.stdin.read()
def us(v):
    n, unit = re.match(r"([\d.]+)(\w+)", v).groups()
    return float(n) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
total = int(re.search(r"(\d+) requests in", text).group(1))
# The latency distribution lines, not the "99%" that ends a stats column.
p50 = us(re.search(r"^\s+50%\s+(\S+)", text, re.M).group(1))
p99 = us(re.search(r"^\s+99%\s+(\S+)", text, re.M).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
bad = int(errors.group(1)) if errors else 0
per = lambda t: t * 1e6 / tck / max(total, 1)
print(f"{name}\t{workload}\t{rps:.0f}\t{p50:.0f}\t{p99:.0f}\t{per(ticks):.2f}\t{bad}\t{per(user):.2f}\t{per(system):.2f}")
PY

: > "$WORK/results.tsv"
for round in $(seq "$ROUNDS"); do
  echo "bench.sh: round $round of $ROUNDS" >&2
  for name in $SERVERS; do
    start "$name"
    case "$name" in
      ours-async|base-async) workloads="submit keyed route health" ;;
      ours-sync|base-sync) workloads="submit keyed" ;;
      axum-buffered) workloads="submit route health" ;;
      axum-durable) workloads="submit" ;;
      floor) workloads="health submit" ;;   # submit: read the request, answer 200 ok
    esac
    for w in $workloads; do
      [ -z "$WORKLOADS" ] || [[ " $WORKLOADS " == *" $w "* ]] || continue
      measure "$name" "$w" "$round"
    done
    stop
  done
done

mkdir -p "$OUT"
SETUP="Server on CPU(s) $SERVER_CPUS ($SHARDS shard(s) / tokio workers), wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s on CPU(s) $WRK_CPUS, median of $ROUNDS rounds; $(nproc) CPUs, $(uname -r)."
python3 - "$WORK/results.tsv" "$OUT" "$SETUP" <<'PY' | tee "$OUT/results.md"
import html, statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines() if l]
out, setup = sys.argv[2], sys.argv[3]
by = {}
for name, w, rps, p50, p99, cpu, bad, user, system in rows:
    by.setdefault((name, w), []).append((float(rps), float(p50), float(p99), float(cpu), int(bad), float(user), float(system)))
med = {k: [statistics.median(x[i] for x in v) for i in range(4)] + [sum(x[4] for x in v)]
       + [statistics.median(x[i] for x in v) for i in (5, 6)] for k, v in by.items()}
print()
print(setup)
print()
print("| workload | server | req/s | p50 µs | p99 µs | server CPU µs/req | user | system | non-2xx |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for (name, w), (rps, p50, p99, cpu, bad, user, system) in sorted(med.items(), key=lambda kv: (kv[0][1], kv[0][0])):
    print(f"| {w} | {name} | {rps:.0f} | {p50:.0f} | {p99:.0f} | {cpu:.2f} | {user:.2f} | {system:.2f} | {bad} |")
print()
print("| ratio | req/s | CPU µs/req | user CPU µs/req |")
print("|---|---:|---:|---:|")
ratios = []
def ratio(a, b, label):
    if a in med and b in med:
        r = (label, med[a][0] / med[b][0], med[a][3] / med[b][3])
        ratios.append(r)
        user = f"{med[a][5] / med[b][5]:.2f}" if med[b][5] else "-"
        print(f"| {label} | {r[1]:.2f} | {r[2]:.2f} | {user} |")
ratio(("ours-async", "submit"), ("axum-buffered", "submit"), "submit: ours async / axum buffered")
ratio(("ours-sync", "submit"), ("axum-buffered", "submit"), "submit: ours sync / axum buffered")
ratio(("ours-sync", "submit"), ("axum-durable", "submit"), "submit: ours sync / axum durable")
ratio(("ours-async", "keyed"), ("ours-async", "submit"), "async: keyed / plain submit")
ratio(("ours-sync", "keyed"), ("ours-sync", "submit"), "sync: keyed / plain submit")
ratio(("ours-async", "route"), ("axum-buffered", "route"), "route: ours / axum")
ratio(("ours-async", "health"), ("axum-buffered", "health"), "health: ours / axum")
ratio(("ours-async", "health"), ("floor", "health"), "health: ours / floor")
ratio(("ours-async", "route"), ("floor", "health"), "route: ours / floor (health)")
ratio(("ours-async", "submit"), ("floor", "submit"), "submit async: ours / floor")
ratio(("ours-sync", "submit"), ("floor", "submit"), "submit sync: ours / floor")
ratio(("ours-async", "submit"), ("base-async", "submit"), "submit async: ours / base")
ratio(("ours-sync", "submit"), ("base-sync", "submit"), "submit sync: ours / base")
ratio(("ours-async", "keyed"), ("base-async", "keyed"), "keyed async: ours / base")
ratio(("ours-sync", "keyed"), ("base-sync", "keyed"), "keyed sync: ours / base")
ratio(("ours-async", "route"), ("base-async", "route"), "route: ours / base")
ratio(("ours-async", "health"), ("base-async", "health"), "health: ours / base")

# The chart: per workload, one bar per server, for req/s (left) and CPU µs/request
# (right), then the ratios as text. A few dozen lines of SVG, no plotting toolchain.
workloads = sorted({w for _, w in med})
servers = sorted({n for n, _ in med}, key=lambda n: [r[0] for r in rows].index(n))
colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
color = {n: colors[i % len(colors)] for i, n in enumerate(servers)}
panel_w, panel_h, top, left, bar = 420, 240, 60, 60, 12
group_w = (panel_w - 20) / max(len(workloads), 1)
svg = []
def text(x, y, s, size=12, anchor="start", weight="normal"):
    svg.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}">{html.escape(s)}</text>')
def panel(x0, metric, title, fmt):
    peak = max((v[metric] for v in med.values()), default=1) or 1
    text(x0 + panel_w / 2, top - 12, title, 13, "middle", "bold")
    svg.append(f'<line x1="{x0}" y1="{top + panel_h}" x2="{x0 + panel_w}" y2="{top + panel_h}" stroke="#333"/>')
    for g, w in enumerate(workloads):
        present = [n for n in servers if (n, w) in med]
        gx = x0 + 10 + g * group_w + (group_w - len(present) * (bar + 2)) / 2
        for i, n in enumerate(present):
            v = med[(n, w)][metric]
            h = panel_h * v / peak
            x = gx + i * (bar + 2)
            svg.append(f'<rect x="{x:.1f}" y="{top + panel_h - h:.1f}" width="{bar}" height="{h:.1f}" fill="{color[n]}"><title>{n} {w}: {fmt(v)}</title></rect>')
            text(x + bar / 2, top + panel_h - h - 3, fmt(v), 8, "middle")
        text(x0 + 10 + g * group_w + group_w / 2, top + panel_h + 16, w, 12, "middle")
panel(left, 0, "req/s (higher is better)", lambda v: f"{v / 1000:.0f}k")
panel(left + panel_w + 60, 3, "server CPU µs/request (lower is better)", lambda v: f"{v:.1f}")
y = top + panel_h + 40
for i, n in enumerate(servers):
    x = left + i * 130
    svg.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{color[n]}"/>')
    text(x + 16, y, n)
y += 28
for label, r, c in ratios:
    text(left, y, f"{label}: req/s {r:.2f}x, CPU/request {c:.2f}x", 11)
    y += 16
text(left, y + 8, setup, 10)
width, height = left + 2 * panel_w + 100, y + 24
with open(f"{out}/chart.svg", "w") as f:
    f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">\n')
    f.write(f'<rect width="{width}" height="{height}" fill="white"/>\n')
    f.write("\n".join(svg) + "\n</svg>\n")
PY
echo "bench.sh: wrote $OUT/results.md and $OUT/chart.svg" >&2
