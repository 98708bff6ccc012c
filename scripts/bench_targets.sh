#!/usr/bin/env bash
# Runs the issue-4 target measurements recorded in BENCHMARKS.md, each against a fresh release
# server on this machine, and appends the JSON lines to docs/bench/targets.jsonl:
#   efficiency  10 rooms x 100 subscribers x 1 publisher at 100 msg/s, 64 B, 10 s (3 runs)
#   connect     5 000 connections at concurrency 200 (3 runs)
#   slow        8 KiB messages at 50 msg/s per room into 1 MiB queues, without and with 10
#               consumers that stop reading (2 pairs)
#   floor       one loopback write per frame vs batched, no server (examples/write_floor.rs)
#
#   scripts/bench_targets.sh [efficiency|connect|slow|floor|all]
#
# Every server is stopped by PID when its run ends. Needs: cargo.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release --quiet -p switchboard -p switchboard-bench --bins --examples
BENCH=target/release/switchboard-bench
OUT=docs/bench/targets.jsonl
LOG="${TMPDIR:-/tmp}/switchboard-bench-server.log"
mkdir -p "$(dirname "$OUT")"

# shellcheck source=scripts/bench_lib.sh
. "$ROOT/scripts/bench_lib.sh"

# run PORT QUEUE-BYTES BENCH-ARGS...: one fresh server, one run.
run() {
  local port=$1 queue=$2; shift 2
  target/release/switchboard --host 127.0.0.1 --port "$port" --rate-limit 0 \
    --max-connections 200000 --max-connections-per-user 100000 \
    --max-queued-bytes "$queue" --log-level error >>"$LOG" 2>&1 &
  local pid=$!
  wait_port "$port"
  "$BENCH" "$@" --url "ws://127.0.0.1:$port/" --server-pid "$pid" | grep '^{' | tee -a "$OUT"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

efficiency() {
  for _ in 1 2 3; do
    run 39300 64MiB fanout --rooms 10 --subscribers 100 --publishers 1 --rate 100 \
      --duration 10 --warmup 2 --size 64 --label "efficiency target"
  done
}

connect() {
  for _ in 1 2 3; do
    run 39301 64MiB connect --connections 5000 --concurrency 200 --label "connect target"
  done
}

slow() {
  for _ in 1 2; do
    for stalled in 0 10; do
      run 39302 1MiB fanout --rooms 10 --subscribers 100 --publishers 1 --rate 50 \
        --duration 20 --warmup 2 --size 8192 --stalled "$stalled" \
        --label "slow consumers: $stalled stalled"
    done
  done
}

floor() {
  cargo run --release --quiet -p switchboard-bench --example write_floor -- 1000 256 72 16
}

case "${1:-all}" in
  efficiency) efficiency ;;
  connect) connect ;;
  slow) slow ;;
  floor) floor ;;
  all) efficiency; connect; slow; floor ;;
  *) echo "usage: $0 [efficiency|connect|slow|floor|all]" >&2; exit 2 ;;
esac
