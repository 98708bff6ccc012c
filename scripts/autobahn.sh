#!/usr/bin/env bash
# Runs the Autobahn WebSocket conformance suite (RFC 6455) against Switchboard's /echo endpoint.
#
#   scripts/autobahn.sh [OUTDIR]      (default target/autobahn; report in OUTDIR/index.html)
#
# Installs wstest once through ../shared/tools/autobahn/setup.sh, builds the release binary,
# starts it on a free port with the echo endpoint and limits large enough for the suite's
# 16 MiB messages, runs every case and prints the JSON summary. Exit status 1 on any FAILED case.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/../shared/tools/autobahn"
OUT="${1:-$ROOT/target/autobahn}"

if ! "$TOOLS/wstest.sh" --autobahnversion >/dev/null 2>&1; then
  # setup.sh needs setuptools under Python 2.7 to build txaio; the last release for 2.7 is
  # 44.1.1. Install it into the suite's private site dir first (setup.sh then resumes).
  bash "$TOOLS/setup.sh" || {
    P="${AUTOBAHN_HOME:-$HOME/.cache/autobahn-py27}"
    LD_LIBRARY_PATH="$P/root/usr/lib/x86_64-linux-gnu:$P/root/lib/x86_64-linux-gnu" \
    PYTHONHOME="$P/root/usr" PYTHONPATH="$P/site" "$P/root/usr/bin/python2.7" \
      -m pip install -q --no-warn-script-location --target "$P/site" setuptools==44.1.1 wheel==0.37.1
    bash "$TOOLS/setup.sh"
  }
fi

cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p switchboard
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$ROOT/target/release/switchboard" --host 127.0.0.1 --port "$PORT" --echo-endpoint \
  --max-frame-size 32MiB --max-queued-bytes 256MiB --rate-limit 0 \
  --max-connections-per-user 10000 --log-level warn &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done
"$TOOLS/run.sh" "ws://127.0.0.1:$PORT/echo" switchboard "$OUT"
