#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60). Needs a nightly toolchain and cargo-fuzz
# (`cargo install cargo-fuzz`). Not part of CI. Crashes land in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-60}"
for t in mrc_header star cs box_file; do
  echo "== $t ($secs s)"
  cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=4096
done
