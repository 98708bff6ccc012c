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
#   brokers one node alone, then the cross-node fan-out with each broker carrying the
#           messages (Redis pub/sub, a Redis Cluster of 3 masters with sharded pub/sub, NATS,
#           RabbitMQ; with the last two Redis stays the state store), history off so that
#           only the broker is on the message path, interleaved rounds (ROUNDS, default 3;
#           BROKERS, default "local redis redis-cluster nats amqp", picks and orders them).
#   costs   what one connection costs where: 3 nodes and one Redis holding 30 000 idle
#           connections in 300 rooms with members on every node (each node's RSS, Redis's
#           memory and commands), the numbers the 1 000 000-connection projection uses.
#   rewrite how long one Redis command held Redis (its latency monitor, its slow log) while a
#           node of 19 000 users rewrote its state: after its connections to Redis were cut
#           (the state still there: whether it wrote anything), and after Redis restarted
#           empty (and how long the rewrite took).
#   joins   a burst of joins to new rooms on a node of a Redis Cluster (3 masters): 2 000
#           connections at concurrency 200, each in a room of its own, so each join adds a
#           sharded subscription (the idle scenario's connections/s include the joins).
#
#   scripts/bench_cluster.sh [cross|scale|history|brokers|costs|rewrite|joins|all]
#
# SERVER (default target/release/switchboard, built first) is the node binary, to compare two
# builds: e.g. SERVER=/tmp/before scripts/bench_cluster.sh cross, then the same without it.
#
# Every process it starts (redis-server, nats-server, rabbitmq-server with its epmd, the nodes)
# is stopped by PID when it ends. The CPU of Redis and of the broker in each run is read from
# /proc and printed after the run's JSON line. Needs: cargo, redis-server; for `brokers` also
# nats-server and rabbitmq-server (Debian's packages, in /usr/sbin).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
cargo build --release --quiet -p switchboard -p switchboard-bench
BENCH=target/release/switchboard-bench
SERVER=${SERVER:-target/release/switchboard}
OUT=docs/bench
LOG="${TMPDIR:-/tmp}/switchboard-bench-cluster.log"
REDIS_PORT=39400
REDIS_PIDS=()
REDIS_PORTS=()
NATS_PORT=39401
AMQP_PORT=39402
PATH="$PATH:/usr/sbin"
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

# start_redis [extra redis-server flags...]
start_redis() {
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --maxclients 1000 "$@" >>"$LOG" 2>&1 &
  REDIS_PID=$!
  PIDS+=("$REDIS_PID")
  REDIS_PIDS=("$REDIS_PID")
  REDIS_PORTS=("$REDIS_PORT")
  wait_port "$REDIS_PORT"
}

# Starts a Redis Cluster of three masters (no replicas) on REDIS_PORT, REDIS_PORT + 5 and
# REDIS_PORT + 6 (their cluster buses 10 000 above), as the tests' RedisClusterServer does;
# REDIS_PIDS and REDIS_PORTS list all three.
start_redis_cluster() {
  local dir port nodes=()
  dir=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-bench-redis-cluster.XXXXXX")
  REDIS_PIDS=()
  REDIS_PORTS=()
  for port in "$REDIS_PORT" $((REDIS_PORT + 5)) $((REDIS_PORT + 6)); do
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no \
      --cluster-enabled yes --cluster-config-file "$dir/nodes-$port.conf" \
      --maxclients 1000 >>"$LOG" 2>&1 &
    REDIS_PIDS+=($!)
    PIDS+=($!)
    REDIS_PORTS+=("$port")
    nodes+=("127.0.0.1:$port")
    wait_port "$port"
  done
  REDIS_PID=${REDIS_PIDS[0]}
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >>"$LOG" 2>&1
  for port in "${REDIS_PORTS[@]}"; do
    until redis-cli -p "$port" cluster info | grep -q 'cluster_state:ok'; do sleep 0.1; done
  done
  rm -rf "$dir"
}

# node PORT [extra flags...]: starts one node and sets NODE_PID. The handshake timeout is raised
# from 10 s because six nodes, Redis and the load tool's 100 000 connections share two cores:
# a client process can take longer than 10 s between its TCP connect and its upgrade request.
node() {
  local port=$1; shift
  "$SERVER" --host 127.0.0.1 --port "$port" --rate-limit 0 \
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

# cpu PID...: the processes' CPU time in seconds (utime + stime) so far, summed; 0 without.
cpu() {
  local hz total=0 pid
  hz=$(getconf CLK_TCK)
  for pid in "$@"; do
    [ -n "$pid" ] || continue
    total=$(awk -v hz="$hz" -v t="$total" '{ print t + ($14 + $15) / hz }' "/proc/$pid/stat")
  done
  echo "$total"
}

# redis_info FIELD: a numeric field of Redis's INFO, summed over the Redis servers (0 without).
redis_info() {
  [ -n "${REDIS_PID:-}" ] || { echo 0; return; }
  local port
  for port in "${REDIS_PORTS[@]}"; do
    redis-cli -p "$port" info | tr -d '\r' | awk -F: -v f="$1" '$1 == f { print $2 }'
  done | awk '{ t += $1 } END { print t }'
}

# bench ARGS...: runs the tool, keeps its JSON line, prints the CPU Redis and the broker
# (BROKER_PID, when one runs besides Redis) spent during the run, the commands Redis
# processed during it and its memory after it.
bench() {
  local redis_before broker_before commands_before redis_after broker_after commands_after
  redis_before=$(cpu "${REDIS_PIDS[@]}")
  broker_before=$(cpu "${BROKER_PID:-}")
  commands_before=$(redis_info total_commands_processed)
  "$BENCH" "$@" | grep '^{' | tee -a "$OUT/cluster.jsonl" || echo "run failed: $*" >&2
  redis_after=$(cpu "${REDIS_PIDS[@]}")
  broker_after=$(cpu "${BROKER_PID:-}")
  commands_after=$(redis_info total_commands_processed)
  awk -v ra="$redis_after" -v rb="$redis_before" -v ba="$broker_after" -v bb="$broker_before" \
    -v ca="$commands_after" -v cb="$commands_before" -v mem="$(redis_info used_memory)" \
    -v peak="$(redis_info used_memory_peak)" \
    'BEGIN { printf "redis cpu: %.2f s, broker cpu: %.2f s, redis commands: %d, redis memory: %d B (peak %d B)\n",
             ra - rb, ba - bb, ca - cb, mem, peak }'
}

start_nats() {
  nats-server --addr 127.0.0.1 --port "$NATS_PORT" >>"$LOG" 2>&1 &
  BROKER_PID=$!
  PIDS+=("$BROKER_PID")
  wait_port "$NATS_PORT"
}

# Starts a private rabbitmq-server (its own epmd, node name and directory, as the tests'
# RabbitMqServer does) and sets BROKER_PID to its Erlang VM, whose CPU is the broker's.
start_rabbitmq() {
  local dir epmd_port=39403 dist_port=39404
  dir=$(mktemp -d "${TMPDIR:-/tmp}/switchboard-bench-rabbitmq.XXXXXX")
  printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users = none\n' "$AMQP_PORT" \
    >"$dir/rabbitmq.conf"
  echo '[].' >"$dir/enabled_plugins"
  : >"$dir/rabbitmq-env.conf"
  epmd -port "$epmd_port" -address 127.0.0.1 >>"$LOG" 2>&1 &
  PIDS+=($!)
  ( cd "$dir" && HOME="$dir" ERL_EPMD_PORT=$epmd_port RABBITMQ_NODENAME="sbbench@localhost" \
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$AMQP_PORT \
    RABBITMQ_DIST_PORT=$dist_port RABBITMQ_MNESIA_BASE="$dir/mnesia" \
    RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-start_epmd false" \
    exec /usr/lib/rabbitmq/bin/rabbitmq-server >>"$LOG" 2>&1 ) &
  PIDS+=($!)
  for _ in $(seq 1200); do
    BROKER_PID=$(pgrep -f "beam.smp.* -home $dir " | head -1 || true)
    [ -n "$BROKER_PID" ] && (exec 3<>"/dev/tcp/127.0.0.1/$AMQP_PORT") 2>/dev/null && break
    sleep 0.1
  done
  PIDS+=("$BROKER_PID")
  wait_port "$AMQP_PORT"
  RABBITMQ_DIR=$dir
}

cross() {
  local load=(fanout --rooms 10 --subscribers 100 --publishers 1 --rate 100 --duration 10
              --warmup 2 --size 64)
  REDIS_PID=""
  REDIS_PIDS=()
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
  # Users go `away` 2 minutes (the default --away-timeout) after their join, as opening the
  # 100 000 takes: their presence changes would be a second burst of notices while memory is
  # read. 4 minutes keeps them out of the idle run (one node alone, which the figure is
  # compared with, opens its connections in seconds).
  for port in "${ports[@]}"; do
    node "$port" --redis-url "redis://127.0.0.1:$REDIS_PORT" --away-timeout 4m
    urls+=(--url "ws://127.0.0.1:$port/")
    pids+=(--server-pid "$NODE_PID")
  done
  # Every room has members on every node (the tool spreads each room over all --url). Memory
  # is read 30 s after the last join: the load tool, on the same two cores, may still be
  # reading the joins' 10 million notices for a while after it, and notices queued for it are
  # not what an idle connection costs (the run prints the nodes' CPU while holding: 0 once
  # they are idle).
  bench idle --connections 100000 --rooms 1000 --settle 30 --hold 2 --concurrency 200 \
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

# One cross-node run with messages through BROKER (redis, redis-cluster, nats or amqp), or
# the same load on one node without Redis (local).
broker_run() {
  local broker=$1 flags=() pids=()
  BROKER_PID=""
  if [ "$broker" = local ]; then
    REDIS_PID=""
    REDIS_PIDS=()
    node 39410
    bench fanout --rooms 10 --subscribers 100 --publishers 1 --rate 100 --duration 10 \
      --warmup 2 --size 64 --label "single node, messages through local" \
      --url ws://127.0.0.1:39410/ --server-pid "$NODE_PID"
    cleanup
    return
  fi
  if [ "$broker" = redis-cluster ]; then start_redis_cluster; else start_redis; fi
  case "$broker" in
    redis-cluster) flags=(--redis-cluster) ;;
    nats) start_nats; flags=(--broker-url "nats://127.0.0.1:$NATS_PORT") ;;
    amqp) start_rabbitmq; flags=(--broker-url "amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f") ;;
  esac
  for port in 39411 39412 39413; do
    node "$port" --redis-url "redis://127.0.0.1:$REDIS_PORT" --history-size 0 "${flags[@]}"
    pids+=(--server-pid "$NODE_PID")
  done
  bench fanout --rooms 10 --subscribers 100 --publishers 1 --rate 100 --duration 10 \
    --warmup 2 --size 64 --label "3 nodes, messages through $broker, history off" \
    --publisher-url ws://127.0.0.1:39411/ --url ws://127.0.0.1:39412/ \
    --url ws://127.0.0.1:39413/ "${pids[@]}"
  cleanup
  [ -n "${RABBITMQ_DIR:-}" ] && rm -rf "$RABBITMQ_DIR" && RABBITMQ_DIR=""
  BROKER_PID=""
}

costs() {
  start_redis
  local urls=() pids=()
  for port in 39431 39432 39433; do
    node "$port" --redis-url "redis://127.0.0.1:$REDIS_PORT"
    urls+=(--url "ws://127.0.0.1:$port/")
    pids+=(--server-pid "$NODE_PID")
  done
  echo "redis memory before: $(redis_info used_memory) B"
  bench idle --connections 30000 --rooms 300 --settle 10 --hold 2 --concurrency 200 \
    --label "3 nodes, 30k idle connections" "${urls[@]}" "${pids[@]}"
  cleanup
}

# state_version NODE: the version field of the node's state hash (empty while it has none).
state_version() {
  redis-cli -p "$REDIS_PORT" hget "sb:{cluster}state:$1" version | tr -d '\r'
}

# rewritten NODE: waits (up to 60 s) until the node's state has a version (after Redis
# restarted empty), then prints the seconds since START (date +%s.%N) and the slowest command
# Redis saw.
rewritten() {
  for _ in $(seq 6000); do
    [ -n "$(state_version "$1")" ] && break
    sleep 0.01
  done
  awk -v s="$START" -v e="$(date +%s.%N)" 'BEGIN { printf "rewritten after %.2f s; ", e - s }'
  echo "slowest command: $(slowest)"
}

# slowest: the longest command Redis's latency monitor saw, and the slow log's longest (then
# emptied).
slowest() {
  echo "$(redis-cli -p "$REDIS_PORT" latency latest | tr '\n' ' ')"
  echo "  the slow log's longest: $(redis-cli -p "$REDIS_PORT" --json slowlog get 128 |
    python3 -c 'import json, sys
slow = json.load(sys.stdin)
top = max(slow, key=lambda entry: entry[2], default=None)
print(f"{top[2]} µs, {top[3][0]}" if top else "none over 10 ms")')"
  redis-cli -p "$REDIS_PORT" slowlog reset >/dev/null
}

rewrite() {
  local users=19000 node=39441 bench_pid version
  start_redis --latency-monitor-threshold 1
  node "$node" --redis-url "redis://127.0.0.1:$REDIS_PORT" --redis-prefix sb:
  "$BENCH" idle --connections "$users" --rooms $((users / 100)) --concurrency 200 --settle 1 \
    --hold 60 --url "ws://127.0.0.1:$node/" >>"$LOG" 2>&1 &
  bench_pid=$!
  until [ "$(redis-cli -p "$REDIS_PORT" hget 'sb:{cluster}counts' connections)" = "$users" ]; do
    sleep 0.2
  done
  sleep 2
  echo "$users users on one node: $(redis-cli -p "$REDIS_PORT" hlen "sb:{cluster}state:n$node") state fields"
  version=$(state_version "n$node")
  redis-cli -p "$REDIS_PORT" latency reset >/dev/null
  redis-cli -p "$REDIS_PORT" slowlog reset >/dev/null
  redis-cli -p "$REDIS_PORT" client kill type pubsub >/dev/null
  redis-cli -p "$REDIS_PORT" client kill type normal skipme yes >/dev/null
  echo -n "connections cut, state kept: "
  # Nothing to write: the version stays. Wait for the node to report itself connected and
  # settled again, and for the read of its state to end.
  sleep 0.5
  until curl -s -m 2 "http://127.0.0.1:$node/stats" |
    grep -q '"brokerStatus":"connected","brokerSettled":true'; do sleep 0.05; done
  sleep 1
  if [ "$(state_version "n$node")" = "$version" ]; then
    echo "nothing written; slowest command: $(slowest)"
  else
    echo "rewritten; slowest command: $(slowest)"
  fi
  kill "$REDIS_PID"
  wait "$REDIS_PID" 2>/dev/null || true
  START=$(date +%s.%N)
  start_redis --latency-monitor-threshold 1
  echo -n "Redis restarted empty: "
  rewritten "n$node"
  echo "state fields after: $(redis-cli -p "$REDIS_PORT" hlen "sb:{cluster}state:n$node")"
  kill "$bench_pid" 2>/dev/null || true
  wait "$bench_pid" 2>/dev/null || true
  cleanup
}

joins() {
  start_redis_cluster
  node 39431 --redis-cluster --redis-url "redis://127.0.0.1:$REDIS_PORT"
  bench idle --connections 2000 --rooms 2000 --concurrency 200 --settle 1 --hold 1 \
    --label "joins to 2 000 new rooms, Redis Cluster" --url ws://127.0.0.1:39431/ \
    --server-pid "$NODE_PID"
  cleanup
}

brokers() {
  for _ in $(seq "${ROUNDS:-3}"); do
    for broker in ${BROKERS:-local redis redis-cluster nats amqp}; do broker_run "$broker"; done
  done
}

case "${1:-all}" in
  cross) cross ;;
  scale) scale ;;
  history) history ;;
  brokers) brokers ;;
  costs) costs ;;
  rewrite) rewrite ;;
  joins) joins ;;
  all) cross; scale; history; brokers; costs; rewrite; joins ;;
  *) echo "usage: $0 [cross|scale|history|brokers|costs|rewrite|joins|all]" >&2; exit 2 ;;
esac
