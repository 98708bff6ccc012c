#!/usr/bin/env bash
# Switchboard against a peer baseline (a Bun 1.4.5 / uWebSockets server, bench/peers/bun), both
# measured by the project's bench tool in one run, in interleaved rounds (S B S B ...), each run
# against a fresh server started here; plus the loopback write floor (examples/write_floor.rs)
# once per round, so that every figure sees the same machine load. Prints one table of medians
# with the Switchboard/Bun ratios, and appends every JSON line to docs/bench/peer.jsonl.
#
#   scripts/bench_peer.sh                       # 3 rounds of fanout, idle, connect
#   ROUNDS=5 SCENARIOS="fanout" scripts/bench_peer.sh
#
# Scenarios (the ones of issue 18):
#   fanout   10 rooms x 100 subscribers x 1 publisher x 100 msg/s, 64-byte content, 10 s
#   idle     10 000 connections in rooms of 100, memory read SETTLE (30) s after the joins
#   connect  5 000 connections at concurrency 200
#   soak     190 rooms x 100 subscribers x 1 publisher x 1 msg/s for SOAK (600) s, no idle
#            timeout, the server's RSS sampled every 10 s: does it level off? (not in the
#            default list: SCENARIOS=soak ROUNDS=1 scripts/bench_peer.sh)
#
# Loopback only; every server is stopped by PID when its run ends; the bench spreads large runs
# over worker processes under the open-files limit. Needs cargo and npm (for the first `npm ci`
# in bench/peers/bun, which downloads the Bun binary, ~40 MB, from the npm registry).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ROUNDS=${ROUNDS:-3}
SCENARIOS=${SCENARIOS:-fanout idle connect}
SETTLE=${SETTLE:-30}
SOAK=${SOAK:-600}
PORT=${PORT:-39500}
OUT=docs/bench/peer.jsonl
LOG="${TMPDIR:-/tmp}/switchboard-bench-peer.log"
BENCH=target/release/switchboard-bench
FLOOR=target/release/examples/write_floor
PEER=bench/peers/bun
BUN="$PEER/node_modules/.bin/bun"
RESULTS="$(mktemp)"
FLOORS="$(mktemp)"
trap 'rm -f "$RESULTS" "$FLOORS"' EXIT

cargo build --release --quiet -p switchboard -p switchboard-bench --bins --example write_floor
[ -x "$BUN" ] || (cd "$PEER" && npm ci --no-audit --no-fund --silent)
mkdir -p "$(dirname "$OUT")"

# shellcheck source=scripts/bench_lib.sh
. "$ROOT/scripts/bench_lib.sh"

# start SERVER: starts a fresh server of that kind on $PORT and sets PID.
start() {
  case $1 in
    switchboard)
      target/release/switchboard --host 127.0.0.1 --port "$PORT" --rate-limit 0 \
        --max-connections 200000 --max-connections-per-user 100000 \
        --max-queued-bytes 64MiB --idle-timeout 0 --log-level error >>"$LOG" 2>&1 & ;;
    bun)
      "$BUN" "$PEER/server.ts" --host 127.0.0.1 --port "$PORT" >>"$LOG" 2>&1 & ;;
  esac
  PID=$!
  wait_port "$PORT"
}

# run SERVER SCENARIO: one fresh server, one run of the scenario, its JSON line kept.
run() {
  local server=$1 scenario=$2 url="ws://127.0.0.1:$PORT/"
  start "$server"
  case $scenario in
    fanout)
      timeout 120 "$BENCH" fanout --url "$url" --rooms 10 --subscribers 100 --publishers 1 \
        --rate 100 --duration 10 --warmup 2 --size 64 --server-pid "$PID" --label "$server" ;;
    idle)
      timeout 300 "$BENCH" idle --url "$url" --connections 10000 --rooms 100 \
        --settle "$SETTLE" --hold 3 --server-pid "$PID" --label "$server" ;;
    connect)
      timeout 120 "$BENCH" connect --url "$url" --connections 5000 --concurrency 200 \
        --server-pid "$PID" --label "$server" ;;
    soak)
      timeout $((SOAK + 300)) "$BENCH" fanout --url "$url" --rooms 190 --subscribers 100 \
        --publishers 1 --rate 1 --duration "$SOAK" --warmup 10 --size 64 --rss-every 10 \
        --server-pid "$PID" --label "$server" ;;
  esac | grep '^{' | tee -a "$OUT" >>"$RESULTS" || echo "$server $scenario: the run failed" >&2
  kill "$PID"
  wait "$PID" 2>/dev/null || true
}

for round in $(seq "$ROUNDS"); do
  echo "round $round of $ROUNDS" >&2
  "$FLOOR" 1000 256 72 16 | tee -a "$FLOORS" >&2
  for scenario in $SCENARIOS; do
    run switchboard "$scenario"
    run bun "$scenario"
  done
done

python3 - "$RESULTS" "$FLOORS" <<'EOF'
import json, re, statistics, sys

runs = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
floors = [float(m.group(1)) for m in re.finditer(
    r"1 frame per write: .*writer CPU ([0-9.]+) us per frame", open(sys.argv[2]).read())]

def kind(run):
    # A soak is a long fanout with its RSS sampled.
    return "soak" if "rss_series" in run else run["scenario"]

def rss_mb(run, i):
    return run["rss_series"][i]["rss"][0] / 1e6

def per_connection(run, key):
    used = (run.get("servers") or [{}])[0].get(key)
    return used * 1e6 / run["connected"] if used is not None and run["connected"] else None

# (scenario, row label, value of one run or None)
ROWS = [
    ("fanout", "server CPU µs per delivery", lambda r: r["servers"][0]["cpu_us_per_delivery"]),
    ("fanout", "latency p50 ms", lambda r: r["latency_us"]["p50"] / 1000),
    ("fanout", "latency p99 ms", lambda r: r["latency_us"]["p99"] / 1000),
    ("fanout", "delivered / expected %", lambda r: 100 * r["delivered"] / max(r["expected"], 1)),
    ("idle", "RSS bytes per idle connection", lambda r: r["bytes_per_connection"]),
    ("idle", "connections/s while joining", lambda r: r["connections_per_sec"]),
    ("connect", "connections/s", lambda r: r["connections_per_sec"]),
    ("connect", "server CPU µs per connection", lambda r: per_connection(r, "cpu_s")),
    ("connect", "of which in the kernel (system time)", lambda r: per_connection(r, "system_s")),
    ("connect", "handshake p50 ms", lambda r: r["handshake_us"]["p50"] / 1000),
    ("connect", "handshake p99 ms", lambda r: r["handshake_us"]["p99"] / 1000),
    ("soak", "RSS MB after the warm-up", lambda r: rss_mb(r, 0)),
    ("soak", "RSS MB at the end", lambda r: rss_mb(r, -1)),
    ("soak", "RSS growth MB over the second half",
     lambda r: rss_mb(r, -1) - rss_mb(r, len(r["rss_series"]) // 2)),
    ("soak", "delivered / expected %", lambda r: 100 * r["delivered"] / max(r["expected"], 1)),
]

def median(scenario, label, value):
    vals = []
    for r in runs:
        if kind(r) == scenario and r["label"] == label:
            try:
                v = value(r)
            except (KeyError, TypeError, IndexError):
                v = None
            if v is not None:
                vals.append(v)
    return (statistics.median(vals), vals) if vals else (None, vals)

def fmt(x):
    return "—" if x is None else f"{x:,.3f}" if abs(x) < 100 else f"{x:,.0f}"

print("| scenario | figure (median of rounds) | Switchboard | Bun | Switchboard/Bun | runs S; B |")
print("|---|---|---|---|---|---|")
for scenario, name, value in ROWS:
    s, s_all = median(scenario, "switchboard", value)
    b, b_all = median(scenario, "bun", value)
    if s is None and b is None:
        continue
    ratio = f"{s / b:.2f}" if s is not None and b else "—"
    every = "; ".join(", ".join(fmt(v) for v in vals) for vals in (s_all, b_all))
    print(f"| {scenario} | {name} | {fmt(s)} | {fmt(b)} | {ratio} | {every} |")
if floors:
    print(f"| floor | writer CPU µs per 72-byte write, no server | {fmt(statistics.median(floors))} "
          f"| | | {', '.join(fmt(f) for f in floors)} |")
EOF
