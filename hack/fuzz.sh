#!/usr/bin/env bash
# Coverage-guided fuzzing with libFuzzer on the STABLE toolchain (no cargo-fuzz, no nightly flags).
#
#   hack/fuzz.sh                 every target in fuzz/fuzz_targets/*.rs for 20 s each (CI)
#   hack/fuzz.sh query 600       one target for 600 s
#   FUZZ_JOBS=2 hack/fuzz.sh ... libFuzzer -fork jobs (default 1)
#
# Inputs found are added to fuzz/corpus/<target>/ (only the committed seed-* files are tracked);
# a crash, timeout or out-of-memory input is written to fuzz/artifacts/<target>/ and the script
# exits non-zero. The final executions, coverage and peak RSS are printed per target.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"

SECONDS_EACH="${2:-20}"
RSS_LIMIT_MB="${FUZZ_RSS_LIMIT_MB:-2048}"
TIMEOUT_S="${FUZZ_TIMEOUT_S:-10}"
MAX_LEN="${FUZZ_MAX_LEN:-262144}"
TRIPLE="$(rustc -vV | sed -n 's/^host: //p')"

if [[ $# -ge 1 && -n "$1" ]]; then
  targets=("$1")
else
  targets=()
  for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi

# What cargo-fuzz passes, minus its nightly-only flags (-Zsanitizer=address, stack depth via -Z).
# --target makes these apply to the fuzzed code only, not to build scripts and proc macros.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks ${RUSTFLAGS_EXTRA:-}"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"

status=0
for t in "${targets[@]}"; do
  echo "== building fuzz target $t"
  cargo build --release --target "$TRIPLE" --bin "$t"
  bin="$CARGO_TARGET_DIR/$TRIPLE/release/$t"
  mkdir -p "corpus/$t" "artifacts/$t"
  log="$(mktemp)"
  echo "== running $t for ${SECONDS_EACH}s (rss limit ${RSS_LIMIT_MB} MB, timeout ${TIMEOUT_S} s per input)"
  set +e
  "$bin" "corpus/$t" \
    -max_total_time="$SECONDS_EACH" \
    -rss_limit_mb="$RSS_LIMIT_MB" \
    -malloc_limit_mb="$RSS_LIMIT_MB" \
    -timeout="$TIMEOUT_S" \
    -max_len="$MAX_LEN" \
    -print_final_stats=1 \
    -artifact_prefix="artifacts/$t/" \
    ${FUZZ_JOBS:+-fork="$FUZZ_JOBS"} \
    ${FUZZ_ARGS:-} >"$log" 2>&1
  rc=$?
  set -e
  tail -n 25 "$log" | grep -Ev '^(stat::|#[0-9]+\s+(NEW|REDUCE|pulse))' || true
  last="$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)"
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
  rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)"
  cov="$(grep -oE 'cov: [0-9]+' <<<"$last" | tail -n 1)"
  ft="$(grep -oE 'ft: [0-9]+' <<<"$last" | tail -n 1)"
  echo "== $t: rc=$rc executions=${execs:-?} ${cov:-cov: ?} ${ft:-ft: ?} peak_rss_mb=${rss:-?} corpus=$(ls "corpus/$t" | wc -l)"
  # A slow-unit-* artifact is only a report; crash-, timeout-, oom- and leak- ones fail.
  if [[ $rc -ne 0 ]] || grep -qE 'ERROR: libFuzzer|==ERROR|Test unit written to .*/(crash|timeout|oom|leak)-' "$log"; then
    echo "== $t FAILED (see artifacts/$t/); log: $log" >&2
    grep -E 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -n 20 >&2 || true
    status=1
  else
    rm -f "$log"
  fi
done
exit "$status"
