#!/usr/bin/env bash
# Runs the cluster measurements recorded in BENCHMARKS.md ("Cluster") on this machine and
# appends their JSON lines to docs/bench/cluster.jsonl:
#
#   cross   cross-node fan-out: publishers on node A, subscribers on nodes B and C (3 nodes,
#           one Redis), against the same load on one node without Redis;
#   scale   six nodes and one Redis holding 100 000 connections: idle memory per node, one
#           broadcast to everyone (time until the last connection has it), room messages
#           whose rooms have members on every node.
#   history the cross-node fan-out with history off (--history-size 0) and on (100: offsets
#           from a Redis script, history in Redis streams), three interleaved rounds.
#
#   scripts/bench_cluster.sh [cross|scale|history|all]
#
# Every process it starts (redis-server, the nodes) is stopped by PID when it ends. The Redis
# CPU of each run is read from /proc and printed after the run's JSON line. Needs: cargo,
# redis-server.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release --quiet -p switchboard -p switchboard-bench
BENCH=target/release/switchboard-bench
OUT=docs/bench
LOG="${TMPDIR:-/tmp}/switchboard-bench-cluster.log"
REDIS_PORT=39400
mkdir -p "$OUT"
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
trap cleanup EXIT

# shellcheck source=scripts/bench_lib.sh
. "$ROOT/scripts/bench_lib.sh"

start_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --maxclients 1000 >>"$LOG" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  wait_port "$REDIS_PORT"
}

# node PORT [extra flags...]: starts one node and sets NODE_PID. The handshake timeout is raised
# from 10 s because six nodes, Redis and the load tool's 100 000 connections share two cores:
# a client process can take longer than 10 s between its TCP connect and its upgrade request.
node() {
  local port=$1; shift
  target/release/switchboard --host 127.0.0.1 --port "$port" --rate-limit 0 \
    --max-connections 19900 --max-connections-per-user 100000 --max-queued-bytes 64MiB \
    --handshake-timeout 60s --log-level error --node-id "n$port" "$@" >>"$LOG" 2>&1 &
  NODE_PID=$!
  PIDS+=("$NODE_PID")
  wait_port "$port"
}

# Waits until every node on the given ports holds no connection (the previous run's closed).
drained() {
  for port in "$@"; do
    for _ in $(seq 600); do
      curl -s -m 2 "http://127.0.0.1:$port/stats" | grep -q '^{"connections":0,' && break
      sleep 0.1
    done
  done
}

# Redis CPU time in seconds (utime + stime) so far.
redis_cpu() {
  local hz; hz=$(getconf CLK_TCK)
  awk -v hz="$hz" '{ print ($14 + $15) / hz }' "/proc/$REDIS_PID/stat"
}

# bench LABEL-SUFFIX ARGS...: runs the tool, tags and keeps its JSON line, prints Redis CPU.
bench() {
  local before after
  before=$( [ -n "${REDIS_PID:-}" ] && redis_cpu || echo 0 )
  "$BENCH" "$@" | grep '^{' | tee -a "$OUT/cluster.jsonl" || echo "run failed: $*" >&2
  after=$( [ -n "${REDIS_PID:-}" ] && redis_cpu || echo 0 )
  echo "redis cpu: $(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f s", a - b }')"
}

cross() {
  local load=(fanout --rooms 10 --subscribers 100 --publishers 1 --rate 100 --duration 10
              --warmup 2 --size 64)
  REDIS_PID=""
  node 39410
  bench "${load[@]}" --label "single node, no Redis" --url ws://127.0.0.1:39410/ \
    --server-pid "$NODE_PID"
  cleanup

  start_redis
  local pids=()
  for port in 39411 39412 39413; do
    node "$port" --redis-url "redis://127.0.0.1:$REDIS_PORT"
    pids+=(--server-pid "$NODE_PID")
  done
  bench "${load[@]}" --label "3 nodes: publishers on A, subscribers on B and C" \
    --publisher-url ws://127.0.0.1:39411/ --url ws://127.0.0.1:39412/ \
    --url ws://127.0.0.1:39413/ "${pids[@]}"
  cleanup
}

scale() {
  start_redis
  local urls=() pids=() ports=(39421 39422 39423 39424 39425 39426)
  for port in "${ports[@]}"; do
    node "$port" --redis-url "redis://127.0.0.1:$REDIS_PORT"
    urls+=(--url "ws://127.0.0.1:$port/")
    pids+=(--server-pid "$NODE_PID")
  done
  # Every room has members on every node (the tool spreads each room over all --url).
  bench idle --connections 100000 --rooms 1000 --hold 2 --concurrency 200 \
    --label "6 nodes, 100k idle connections" "${urls[@]}" "${pids[@]}"
  drained "${ports[@]}"
  bench broadcast --connections 100000 --rate 1 --duration 3 --warmup 1 --sample-all \
    --drain 20 --concurrency 200 --label "6 nodes, broadcast to 100k" "${urls[@]}" "${pids[@]}"
  drained "${ports[@]}"
  bench fanout --rooms 1000 --subscribers 99 --publishers 1 --rate 1 --duration 5 \
    --warmup 1 --sample-all --concurrency 200 \
    --label "6 nodes, 1000 rooms x 100 members on every node" "${urls[@]}" "${pids[@]}"
  cleanup
}

history() {
  local load=(fanout --rooms 10 --subscribers 100 --publishers 1 --rate 100 --duration 10
              --warmup 2 --size 64)
  for _ in 1 2 3; do
    for size in 0 100; do
      start_redis
      local pids=()
      for port in 39411 39412 39413; do
        node "$port" --redis-url "redis://127.0.0.1:$REDIS_PORT" --history-size "$size"
        pids+=(--server-pid "$NODE_PID")
      done
      bench "${load[@]}" --label "3 nodes, --history-size $size" \
        --publisher-url ws://127.0.0.1:39411/ --url ws://127.0.0.1:39412/ \
        --url ws://127.0.0.1:39413/ "${pids[@]}"
      cleanup
    done
  done
}

case "${1:-all}" in
  cross) cross ;;
  scale) scale ;;
  history) history ;;
  all) cross; scale; history ;;
  *) echo "usage: $0 [cross|scale|history|all]" >&2; exit 2 ;;
esac
