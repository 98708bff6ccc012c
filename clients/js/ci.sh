#!/usr/bin/env bash
# Checks of the JavaScript client: a clean install from the lockfile, the build, that the
# committed dist/ is what the sources and the lockfile build to (the server embeds both the
# client and dist/yjs.bundle.js, the yjs + y-websocket bundle of /demo/doc), and every Node test,
# the browser tests included (test/*.test.mjs: example_backend.test.mjs and
# demo_tokens.browser.test.mjs run examples/backend/server.mjs with the server). The tests run
# the server binary: $SWITCHBOARD_BIN, or the workspace's debug build (scripts/test.sh runs this
# after cargo test has built it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

echo "== npm ci"
npm ci --no-audit --no-fund --loglevel=error
echo "== npm run build (tsc, then build:yjs)"
npm run build --silent
if ! git diff --quiet -- dist || [ -n "$(git status --porcelain -- dist)" ]; then
  git status --short -- dist
  echo "clients/js/dist is stale: run 'npm run build' in clients/js and commit dist/" >&2
  echo "(dist/yjs.bundle.js changes when yjs, y-websocket or esbuild change in package-lock.json)" >&2
  exit 1
fi
echo "== node --test"
node --test --test-concurrency=1 test/*.test.mjs
