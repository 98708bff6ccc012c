#!/usr/bin/env bash
# Runs each cargo-fuzz target in fuzz/ for SECONDS (default 60): the WebSocket frame decoder,
# the JSON client-frame parser, the y-websocket message decoder, the configuration file and the
# MessagePack transcoder.
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

targets=(ws_decoder client_frame yjs_message config msgpack_frame)
cargo fuzz build
for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s"
  mkdir -p "target/corpus/$target"
  # yrs reserves capacity for the block and client counts an update declares (try_reserve): a
  # few malformed bytes can ask for gigabytes of address space that is never touched (the
  # server refuses the update with 1007 and its RSS does not move: measured 8.5 -> 9.3 MB with
  # 50 such updates, VmPeak 3.2 GB). libFuzzer's default malloc limit (the RSS limit, 2 GB)
  # counts that reservation as memory; for this target only the single-allocation limit is
  # lifted, and the RSS limit (memory actually used) still applies.
  limits=()
  [ "$target" = yjs_message ] && limits=(-malloc_limit_mb=1048576 -rss_limit_mb=2048)
  # Allocations past what the sanitizer can serve fail (try_reserve gets an error) instead of
  # aborting, as they do outside the sanitizer.
  export ASAN_OPTIONS=allocator_may_return_null=1
  status=0
  cargo fuzz run "$target" "target/corpus/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len=4096 -print_final_stats=1 "${limits[@]}" \
    >"target/$target.log" 2>&1 ||
    status=$?
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "target/$target.log" || true
  if [ "$status" != 0 ]; then
    tail -n 40 "target/$target.log" >&2
    echo "fuzz target $target failed (exit $status); a failing input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
echo "== fuzzing found nothing"
