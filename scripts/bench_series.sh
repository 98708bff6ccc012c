#!/usr/bin/env bash
# Runs the benchmark series recorded in BENCHMARKS.md against fresh release servers on this
# machine, appends the JSON lines to docs/bench/<series>.jsonl and draws the charts.
#
#   scripts/bench_series.sh [fanout|ceiling|all]
#
# Each run starts its own server and stops it by PID. Needs: cargo, python3.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release --quiet -p switchboard -p switchboard-bench
BENCH=target/release/switchboard-bench
OUT=docs/bench
mkdir -p "$OUT"

server() {
  local port=$1; shift
  target/release/switchboard --host 127.0.0.1 --port "$port" --rate-limit 0 \
    --max-connections 200000 --max-connections-per-user 100000 \
    --max-queued-bytes 64MiB --log-level error "$@" >>"${TMPDIR:-/tmp}/switchboard-bench-server.log" 2>&1 &
  echo $!
}

# shellcheck source=scripts/bench_lib.sh
. "$ROOT/scripts/bench_lib.sh"

run() { # series port bench-args...
  local series=$1 port=$2; shift 2
  local pid; pid=$(server "$port")
  wait_port "$port"
  "$BENCH" "$@" --url "ws://127.0.0.1:$port/" --server-pid "$pid" | grep '^{' | tee -a "$OUT/$series.jsonl"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

series=${1:-all}
if [ "$series" = fanout ] || [ "$series" = all ]; then
  : > "$OUT/fanout.jsonl"
  for subs in 10 50 100 200 500 1000; do
    run fanout 39200 fanout --rooms 10 --subscribers "$subs" --publishers 1 --rate 20 \
      --duration 8 --warmup 2 --size 64 --label "1 node, 10 rooms, 20 msg/s per room"
  done
  python3 scripts/plot_bench.py "$OUT/fanout.jsonl" -o "$OUT/fanout.svg"
fi
if [ "$series" = ceiling ] || [ "$series" = all ]; then
  : > "$OUT/ceiling.jsonl"
  for rate in 2 5 10 20 50 100; do
    run ceiling 39201 fanout --rooms 10 --subscribers 1000 --publishers 1 --rate "$rate" \
      --duration 8 --warmup 2 --size 64 --label "1 node, 10 rooms x 1000 subscribers"
  done
  python3 scripts/plot_bench.py "$OUT/ceiling.jsonl" -o "$OUT/ceiling.svg"
fi
