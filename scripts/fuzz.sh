#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for SECONDS (default 60): the WebSocket frame decoder,
# the JSON client-frame parser, the y-websocket message decoder and the configuration file.
# Usage: scripts/fuzz.sh [SECONDS]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). The toolchain is stable; cargo-fuzz
# needs nightly -Z flags, which RUSTC_BOOTSTRAP=1 allows. The committed seeds are in
# fuzz/corpus/<target> and are only read; what the fuzzer finds goes to fuzz/target/corpus, and
# a crashing input to fuzz/artifacts/<target>/ (the run then fails: reproduce it with
# `cargo fuzz run <target> <file>` and add a regression unit test with the fix).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../fuzz"

seconds="${1:-60}"
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;;
esac
export RUSTC_BOOTSTRAP=1

targets=(ws_decoder client_frame yjs_message config)
cargo fuzz build
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s"
  mkdir -p "target/corpus/$target"
  status=0
  cargo fuzz run "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 >"target/$target.log" 2>&1 ||
    status=$?
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "target/$target.log" || true
  if [ "$status" != 0 ]; then
    tail -n 40 "target/$target.log" >&2
    echo "fuzz target $target failed (exit $status); a failing input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
echo "== fuzzing found nothing"
