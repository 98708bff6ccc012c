#!/usr/bin/env bash
# Dependency audit with cargo-deny; the policy is deny.toml. Needs cargo-deny (.ci/run installs
# it).
#
# licenses, bans and sources read only Cargo.lock and are always checked. advisories needs the
# RustSec advisory database, which cargo-deny clones from GitHub: it is checked when that clone
# works (or a copy is already in ~/.cargo/advisory-dbs), and reported as NOT CHECKED when it
# cannot be fetched. Set REQUIRE_ADVISORIES=1 to fail instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

cargo deny --locked check --hide-inclusion-graph licenses bans sources
mkdir -p target
log=target/advisories.log
if timeout 300 cargo deny --locked check --hide-inclusion-graph advisories >"$log" 2>&1; then
  echo "advisories ok"
elif grep -q "failed to fetch advisory database" "$log"; then
  echo "advisories NOT CHECKED: the RustSec advisory database could not be fetched:" >&2
  grep -m1 "failed to fetch" "$log" >&2
  if [ "${REQUIRE_ADVISORIES:-0}" = 1 ]; then
    exit 1
  fi
else
  cat "$log" >&2
  exit 1
fi
