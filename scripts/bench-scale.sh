#!/usr/bin/env bash
# Many cores: scripts/bench.sh at N shards on CPUs 0..N-1 against axum with N workers,
# wrk on CPUs of their own, for each N in --shards; then one table of req/s, server CPU
# µs/request and the efficiency against linear (req/s at N over N times req/s at 1).
#
#   scripts/bench-scale.sh [--shards "1 2 4 8"] [--wrk-cpus 8-15] [--threads 8]
#                          [--connections-per-shard 64] [--duration 5] [--rounds 2]
#                          [--servers "ours-async ours-sync axum-buffered floor"]
#                          [--workloads "submit keyed health"] [--bin-dir DIR]
#
# Made for a machine with the cores for it (16 CPUs: shards on 0-7, wrk on 8-15); on
# fewer CPUs the shards and wrk would share them, which measures contention, not
# scaling. --bin-dir runs prebuilt binaries (scripts/device-kit.sh makes them, with a
# wrk that runs where none is installed). The report goes to stdout and to
# target/bench-scale/scale.md; each N's own bench.sh report to target/bench-scale/N.
set -euo pipefail
cd "$(dirname "$0")/.."

SHARDS_LIST="1 2 4 8" WRK_CPUS=8-15 THREADS=8 PER_SHARD=64 DURATION=5 ROUNDS=2
SERVERS="ours-async ours-sync axum-buffered floor" WORKLOADS="submit keyed health"
BIN_DIR_ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --shards) SHARDS_LIST=$2; shift 2 ;;
    --wrk-cpus) WRK_CPUS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --connections-per-shard) PER_SHARD=$2; shift 2 ;;
    --duration) DURATION=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --servers) SERVERS=$2; shift 2 ;;
    --workloads) WORKLOADS=$2; shift 2 ;;
    --bin-dir) BIN_DIR_ARGS=(--bin-dir "$2"); shift 2 ;;
    *) echo "bench-scale.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
OUT=target/bench-scale
mkdir -p "$OUT"
ROWS="$OUT/rows.tsv"
: > "$ROWS"
for n in $SHARDS_LIST; do
  cpus=$(seq -s, 0 $((n - 1)))
  echo "bench-scale.sh: $n shard(s) on CPUs $cpus, wrk on $WRK_CPUS" >&2
  BENCH_KEEP="$OUT/rows-$n.tsv" scripts/bench.sh --server-cpus "$cpus" --wrk-cpus "$WRK_CPUS" \
    --threads "$THREADS" --connections $((PER_SHARD * n)) --duration "$DURATION" \
    --rounds "$ROUNDS" --servers "$SERVERS" --workloads "$WORKLOADS" \
    "${BIN_DIR_ARGS[@]}" --out "$OUT/$n" >/dev/null
  sed "s/^/$n\t/" "$OUT/rows-$n.tsv" >> "$ROWS"
done

SETUP="wrk -t$THREADS on CPU(s) $WRK_CPUS, $PER_SHARD connections per shard, ${DURATION} s, median of $ROUNDS rounds; $(nproc) CPUs, $(uname -r)."
python3 - "$ROWS" "$SETUP" <<'PY' | tee "$OUT/scale.md"
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines() if l]
by = {}
for n, name, w, rps, p50, p99, cpu, bad, user, system in rows:
    by.setdefault((name, w, int(n)), []).append((float(rps), float(cpu), int(bad), float(user), float(system)))
med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v),
           sum(x[2] for x in v), statistics.median(x[3] for x in v),
           statistics.median(x[4] for x in v)) for k, v in by.items()}
print()
print(sys.argv[2])
print()
print("| workload | server | shards | req/s | req/s per shard | server CPU µs/req | user | system | efficiency vs linear | non-2xx |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for (name, w, n), (rps, cpu, bad, user, system) in sorted(med.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
    one = med.get((name, w, 1))
    eff = f"{rps / (n * one[0]):.2f}" if one else "-"
    print(f"| {w} | {name} | {n} | {rps:.0f} | {rps / n:.0f} | {cpu:.2f} | {user:.2f} | {system:.2f} | {eff} | {bad} |")
PY
