#!/usr/bin/env bash
# Runs the Autobahn WebSocket conformance suite (RFC 6455, RFC 7692) against Switchboard's
# /echo endpoint.
#
#   scripts/autobahn.sh [OUTDIR]      (default target/autobahn; report in OUTDIR/index.html)
#   env: CASES='["1.*","2.*"]' narrows the run (default every case); AUTOBAHN_MIN_CASES is how
#        many cases a whole run must report (default 517, the suite's count).
#
# Installs wstest once (scripts/autobahn/install.sh), builds the release binary, starts it on a
# free port with the echo endpoint and limits large enough for the suite's 16 MiB messages,
# runs the cases and prints a JSON summary. Exit status 1 when a case FAILED, was UNIMPLEMENTED
# or NON-STRICT, or when fewer cases ran than a whole run has. The compression threshold is 0,
# so every echoed message of the permessage-deflate cases (12.*, 13.*) is compressed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/scripts/autobahn"
OUT="${1:-$ROOT/target/autobahn}"
CASES="${CASES:-[\"*\"]}"
if [ "$CASES" = '["*"]' ]; then MIN_CASES="${AUTOBAHN_MIN_CASES:-517}"; else MIN_CASES=1; fi

"$TOOLS/install.sh"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p switchboard
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$ROOT/target/release/switchboard" --host 127.0.0.1 --port "$PORT" --echo-endpoint \
  --max-frame-size 32MiB --max-queued-bytes 256MiB --rate-limit 0 \
  --max-connections-per-user 10000 --compression-threshold 0 --log-level warn &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.1
done

rm -rf "$OUT"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
cat > "$OUT/spec.json" <<JSON
{
  "outdir": "$OUT",
  "servers": [{"agent": "switchboard", "url": "ws://127.0.0.1:$PORT/echo"}],
  "cases": $CASES,
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON
(cd "$OUT" && timeout 3600 "$TOOLS/wstest.sh" -m fuzzingclient -s "$OUT/spec.json" \
  > "$OUT/wstest.log" 2>&1) || echo "wstest exited with $? (log: $OUT/wstest.log)" >&2
python3 "$TOOLS/verdict.py" "$OUT/index.json" switchboard "$MIN_CASES"
