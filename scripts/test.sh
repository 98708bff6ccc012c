#!/usr/bin/env bash
# Runs every check: formatting, clippy with warnings as errors, the whole test suite (unit,
# integration against real servers, doc tests), the JavaScript client's build and tests (Node.js
# and headless Chromium against the debug binary), the container image (podman, no registry
# needed), the dependency audit, a short fuzzing run of
# every fuzz target (FUZZ_SECONDS each, default 10), and the Autobahn conformance suite.
# Tests against redis-server and nginx are behind the `external` feature of the switchboard
# crate (plain `cargo test` passes without them); this script enables it, so it runs them all.
# Set SKIP_AUTOBAHN=1 to leave out the conformance run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked --features switchboard/external -- -D warnings
echo "== cargo test (with the external tests: redis-server, nginx)"
cargo test --workspace --locked --features switchboard/external
echo "== documentation: links, OpenAPI (docs/openapi.yaml against the routes)"
scripts/check_links.py
scripts/check_openapi.py
echo "== cargo doc"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
echo "== JavaScript client (clients/js/ci.sh)"
cargo build -p switchboard --locked --quiet
clients/js/ci.sh
echo "== container image (scripts/container_test.sh)"
scripts/container_test.sh
echo "== dependency audit (cargo deny)"
scripts/audit.sh
echo "== fuzzing (${FUZZ_SECONDS:-10}s per target)"
scripts/fuzz.sh "${FUZZ_SECONDS:-10}"
if [ "${SKIP_AUTOBAHN:-0}" != 1 ]; then
  echo "== autobahn conformance"
  scripts/autobahn.sh target/autobahn
fi
echo "== all checks passed"
