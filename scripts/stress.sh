#!/usr/bin/env bash
# Memory under abuse (issue 7): each case runs against a fresh release server and reports the
# server's peak RSS (VmHWM from /proc/PID/status) and its RSS afterwards. Bounded: every client
# step times out, and the whole run takes a few minutes. Usage: scripts/stress.sh [PORT]
#
# Cases: 10 000 clients each in its own room (switchboard-bench idle); one client joining
# 100 000 rooms (with the violation limit off, so all of them reach the room cap; and with the
# defaults); a room member that never reads while another floods the room; 4 clients sending
# 1 000 000 tiny frames each; 4 clients sending 64 frames of 1 MiB each.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

port="${1:-39300}"
cargo build --release --locked -p switchboard -p switchboard-bench
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
server_pid=

stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
trap stop_server EXIT

mib() { awk -v kib="$1" 'BEGIN { printf "%.1f MiB", kib / 1024 }'; }
kib() { awk -v key="$1:" '$1 == key { print $2 }' "/proc/$server_pid/status"; }

# case NAME "SERVER FLAGS" CLIENT-COMMAND...: prints one table row.
case_() {
  local name="$1" flags="$2"
  shift 2
  # shellcheck disable=SC2086 # flags are words
  target/release/switchboard --host 127.0.0.1 --port "$port" --log-level error --rate-limit 0 \
    --max-connections 20000 --max-connections-per-user 20000 $flags &
  server_pid=$!
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && break
    sleep 0.1
  done
  local idle result stats
  idle=$(kib VmRSS)
  result=$(timeout 300 "$@" | grep '^{' | tail -n 1 | python3 -c '
import json, sys
r = json.load(sys.stdin)
keep = ("connected", "failed", "rooms") if "connected" in r else tuple(r)
print(", ".join(f"{k} {r[k]}" for k in keep))')
  stats=$(curl -sf "http://127.0.0.1:$port/stats")
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "${flags:-defaults}" \
    "$(mib "$idle")" "$(mib "$(kib VmHWM)")" "$(mib "$(kib VmRSS)")" "$result" \
    "$(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print(", ".join(f"{k} {s[k]}" for k in ("messagesIn","errorsSent","slowConsumersDropped","connections","rooms")))' "$stats")"
  stop_server
}

client=(python3 scripts/stress_client.py "$port")
echo "| case | server flags | RSS idle | peak RSS (VmHWM) | RSS after | client | server /stats after |"
echo "|---|---|---|---|---|---|---|"
case_ "10 000 clients, one room each" "" \
  target/release/switchboard-bench idle --url "ws://127.0.0.1:$port/" --connections 10000 \
  --rooms 10000 --hold 1 --timeout 240
case_ "one client joins 100 000 rooms" "--max-violations 0" "${client[@]}" join 100000
case_ "one client joins 100 000 rooms" "" "${client[@]}" join 100000
case_ "a member that never reads" "" "${client[@]}" never-reads 20000 1000
case_ "tiny-frame flood, 4 x 1 000 000" "" "${client[@]}" flood 4 1000000
case_ "1 MiB frame storm, 4 x 64" "" "${client[@]}" storm 4 64
