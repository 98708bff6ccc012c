#!/usr/bin/env bash
# Compares two server setups with the project's bench tool, in interleaved rounds (A, B, A, B,
# ...), each run against a fresh server, so that both see the same machine load. Prints one JSON
# line per run (the bench tool's, with "label" set to A's or B's label) and appends them to
# docs/bench/ab.jsonl, then a summary per label: median server CPU µs per delivery (fanout),
# median RSS bytes per idle connection (idle), median connections/s and server CPU µs per
# connection (connect: 5 000 connections at concurrency 200).
#
#   A_BIN=/path/to/switchboard A_ARGS="" A_LABEL=before \
#   B_BIN=target/release/switchboard B_ARGS="--history-size 0" B_LABEL=after \
#   ROUNDS=5 SCENARIOS="fanout idle" scripts/bench_ab.sh
#
# A_ENV and B_ENV set environment variables for a side's server (e.g.
# B_ENV="_RJEM_MALLOC_CONF=background_thread:false"); SETTLE is the idle scenario's wait after
# the joins before memory is read (seconds, default 2).
#
# Defaults: both binaries target/release/switchboard, no extra arguments, 5 rounds, both
# scenarios. BENCH (default target/release/switchboard-bench) is the load tool. Every server
# is stopped by PID when its run ends.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
A_BIN=${A_BIN:-target/release/switchboard}
B_BIN=${B_BIN:-target/release/switchboard}
A_ARGS=${A_ARGS:-}
B_ARGS=${B_ARGS:-}
A_ENV=${A_ENV:-}
B_ENV=${B_ENV:-}
SETTLE=${SETTLE:-2}
A_LABEL=${A_LABEL:-A}
B_LABEL=${B_LABEL:-B}
ROUNDS=${ROUNDS:-5}
SCENARIOS=${SCENARIOS:-fanout idle}
BENCH=${BENCH:-target/release/switchboard-bench}
PORT=${PORT:-39460}
OUT=docs/bench/ab.jsonl
LOG="${TMPDIR:-/tmp}/switchboard-bench-ab.log"
RESULTS="$(mktemp)"
mkdir -p "$(dirname "$OUT")"

# shellcheck source=scripts/bench_lib.sh
. "$ROOT/scripts/bench_lib.sh"

# run BIN ARGS LABEL SCENARIO ENV: one fresh server, one run of the scenario.
run() {
  local bin=$1 args=$2 label=$3 scenario=$4 vars=$5
  # shellcheck disable=SC2086 # ARGS and ENV are lists
  env $vars "$bin" --host 127.0.0.1 --port "$PORT" --rate-limit 0 \
    --max-connections 200000 --max-connections-per-user 100000 \
    --max-queued-bytes 64MiB --log-level error $args >>"$LOG" 2>&1 &
  local pid=$!
  wait_port "$PORT"
  case $scenario in
    fanout)
      "$BENCH" fanout --url "ws://127.0.0.1:$PORT/" --rooms 10 --subscribers 100 --publishers 1 \
        --rate 100 --duration 10 --warmup 2 --size 64 --server-pid "$pid" --label "$label" ;;
    idle)
      "$BENCH" idle --url "ws://127.0.0.1:$PORT/" --connections 10000 --rooms 100 --hold 3 --settle "$SETTLE" \
        --server-pid "$pid" --label "$label" ;;
    connect)
      "$BENCH" connect --url "ws://127.0.0.1:$PORT/" --connections 5000 --concurrency 200 \
        --server-pid "$pid" --label "$label" ;;
  esac | grep '^{' | tee -a "$OUT" >>"$RESULTS"
  tail -n 1 "$RESULTS"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

for _ in $(seq "$ROUNDS"); do
  for scenario in $SCENARIOS; do
    run "$A_BIN" "$A_ARGS" "$A_LABEL" "$scenario" "$A_ENV"
    run "$B_BIN" "$B_ARGS" "$B_LABEL" "$scenario" "$B_ENV"
  done
done

python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
def server_us_per_connection(run, key):
    return run["servers"][0][key] * 1e6 / run["connected"]

for scenario, field in (("fanout", "cpu_us_per_delivery"), ("idle", "bytes_per_connection"),
                        ("connect", "connections_per_sec"), ("connect", "cpu_us_per_connection"),
                        ("connect", "system_us_per_connection")):
    by_label = {}
    for run in runs:
        if run["scenario"] != scenario:
            continue
        if scenario == "fanout":
            value = run["servers"][0][field]
        elif field == "cpu_us_per_connection":
            value = server_us_per_connection(run, "cpu_s")
        elif field == "system_us_per_connection":
            # Of the CPU above, the kernel's: system calls and, on loopback, TCP of both ends.
            value = server_us_per_connection(run, "system_s")
        else:
            value = run[field]
        by_label.setdefault(run["label"], []).append(value)
    for label, values in by_label.items():
        print(f"{scenario} {label}: {field} median {statistics.median(values):.3f} "
              f"(runs: {', '.join(f'{v:.3f}' for v in values)})")
EOF
rm -f "$RESULTS"
