#!/usr/bin/env bash
# JSON against MessagePack (subprotocol switchboard.v1.msgpack) with the project's bench tool:
# server CPU per delivery and bytes on the wire per delivery, for each content size, in
# interleaved rounds (json, msgpack, json, msgpack, ...) so that both formats see the same
# machine load. Each run is a fanout against a fresh server; every connection of a run (the
# publisher included) speaks the run's format. Prints the bench tool's JSON line per run
# (with "label" = "<format> <size>"), appends them to docs/bench/msgpack.jsonl, and then
# prints, per size, the medians and the MessagePack/JSON ratios.
#
#   ROUNDS=5 SIZES="64 4096" scripts/bench_msgpack.sh
#
# BIN (default target/release/switchboard) is the server, BENCH (default
# target/release/switchboard-bench) the load tool. Every server is stopped by PID when its run
# ends.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN=${BIN:-target/release/switchboard}
BENCH=${BENCH:-target/release/switchboard-bench}
ROUNDS=${ROUNDS:-5}
SIZES=${SIZES:-64 4096}
PORT=${PORT:-39500}
SUBSCRIBERS=${SUBSCRIBERS:-100}
RATE=${RATE:-200}
DURATION=${DURATION:-5}
OUT=docs/bench/msgpack.jsonl
LOG="${TMPDIR:-/tmp}/switchboard-bench-msgpack.log"
RESULTS="$(mktemp)"
mkdir -p "$(dirname "$OUT")"

# shellcheck source=scripts/bench_lib.sh
. "$ROOT/scripts/bench_lib.sh"

# run FORMAT SIZE: one fresh server, one fanout in FORMAT with SIZE-byte contents.
run() {
  local format=$1 size=$2
  "$BIN" --host 127.0.0.1 --port "$PORT" --rate-limit 0 --max-content-length 100000 \
    --max-connections 200000 --max-connections-per-user 100000 \
    --max-queued-bytes 64MiB --log-level error >>"$LOG" 2>&1 &
  local pid=$!
  wait_port "$PORT"
  "$BENCH" fanout --url "ws://127.0.0.1:$PORT/" --format "$format" --rooms 1 \
    --subscribers "$SUBSCRIBERS" --publishers 1 --rate "$RATE" --duration "$DURATION" \
    --warmup 1 --size "$size" --server-pid "$pid" --label "$format $size" \
    | grep '^{' | tee -a "$OUT" >>"$RESULTS"
  tail -n 1 "$RESULTS"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

for _ in $(seq "$ROUNDS"); do
  for size in $SIZES; do
    run json "$size"
    run msgpack "$size"
  done
done

python3 - "$RESULTS" <<'EOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
medians = {}
for run in runs:
    format_, size = run["label"].split()
    entry = medians.setdefault((int(size), format_), {"cpu": [], "wire": []})
    entry["cpu"].append(run["servers"][0]["cpu_us_per_delivery"])
    entry["wire"].append(run["wire_bytes_per_delivery"])
for size in sorted({size for size, _ in medians}):
    row = {}
    for format_ in ("json", "msgpack"):
        entry = medians[(size, format_)]
        row[format_] = (statistics.median(entry["cpu"]), statistics.median(entry["wire"]))
        print(f"{size} B {format_}: cpu_us_per_delivery median {row[format_][0]:.3f} "
              f"(runs: {', '.join(f'{v:.3f}' for v in entry['cpu'])}), "
              f"wire_bytes_per_delivery median {row[format_][1]:.1f}")
    print(f"{size} B msgpack/json: cpu {row['msgpack'][0] / row['json'][0]:.2f}, "
          f"wire {row['msgpack'][1] / row['json'][1]:.2f}")
EOF
rm -f "$RESULTS"
