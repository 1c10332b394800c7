#!/usr/bin/env bash
# The whole test suite, on a fresh machine: builds the control-plane binaries on first use (cached
# afterwards), starts etcd + kube-apiserver + kube-controller-manager on loopback, runs formatting
# and lint checks, then every unit, property and integration test, the reliability load runs at a
# reduced size (hack/reliability.sh), a short run of every fuzz
# target (FUZZ_SECONDS each, default 15), and stops the control plane. The summary counts each
# fuzz target as one test.
# The in-cluster test (tests/incluster.rs) gets a second control plane with a real node
# (hack/cluster.sh up --node; one per machine) and the image built offline (hack/image.sh); the first
# run installs their Debian packages, builds kubelet, kube-scheduler, kube-proxy and adds the musl
# target. COST_ANALYSIS_NODE=0 leaves the node out (the in-cluster test then says it was skipped).
#   usage: hack/test.sh [extra cargo test args]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

# A clean checkout's run writes about 9 GiB (target/ 6.5, fuzz/target/ 2.4); a full disk shows up
# later as a linker's "No space left on device", so say it first.
avail_mib=$(df -Pm "$root" | awk 'NR == 2 {print $4}')
if [ "${avail_mib:-0}" -lt 12288 ]; then
  echo "warning: ${avail_mib:-?} MiB free under $root; a clean run of the suite writes about 9 GiB" >&2
fi

echo "==> tools: lua5.4 (runs the Argo CD health check), control-plane and observability binaries"
if ! command -v lua5.4 >/dev/null 2>&1; then
  (apt-get install -y -qq lua5.4 >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq lua5.4 >/dev/null; }) \
    || { echo "cannot install lua5.4 (Debian package)" >&2; exit 1; }
fi
bash hack/control-plane-bin.sh >/dev/null
# promtool, prometheus and jaeger for the observability tests (tests/alerts.rs, tests/observability.rs).
bash hack/observability-bin.sh >/dev/null

echo "==> cargo fmt --check, clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> building tests"
cargo test --workspace --no-run --quiet

dir="$root/target/test-cluster"
node_dir="$root/target/test-node-cluster"
bash hack/cluster.sh down "$dir" >/dev/null 2>&1 || true
rm -rf "$dir"
echo "==> starting the control plane in $dir"
bash hack/cluster.sh up "$dir" >/dev/null
trap 'bash hack/cluster.sh down "$dir" >/dev/null 2>&1 || true' EXIT
export COST_ANALYSIS_CLUSTER_DIR="$dir"

if [ "${COST_ANALYSIS_NODE:-1}" != 0 ]; then
  echo "==> the image (hack/image.sh, offline) and a control plane with a node in $node_dir"
  t_node=$(date +%s)
  bash hack/cluster.sh down "$node_dir" >/dev/null 2>&1 || true
  rm -rf "$node_dir"
  trap 'bash hack/cluster.sh down "$node_dir" >/dev/null 2>&1 || true; bash hack/cluster.sh down "$dir" >/dev/null 2>&1 || true' EXIT
  # A failure here is not hidden: the in-cluster test then fails on the missing cluster.
  mkdir -p "$node_dir"
  bash hack/image.sh >"$node_dir/image.env" || echo "hack/image.sh failed" >&2
  bash hack/cluster.sh up --node "$node_dir" >/dev/null || echo "the node cluster did not start (logs: $node_dir)" >&2
  echo "    image and node: $(( $(date +%s) - t_node ))s; $(grep SIZE_BYTES "$node_dir/image.env" || true)"
  export COST_ANALYSIS_NODE_CLUSTER_DIR="$node_dir"
fi

echo "==> cargo test"
start=$(date +%s)
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$dir/cargo-test.log"
status=${PIPESTATUS[0]}
set -e
# The reliability load runs at a reduced size (P5, P6, the shim under load, the cancel races;
# full size: RELIABILITY_FULL=1 hack/reliability.sh). Timings are printed; a wrong state fails.
echo "==> reliability load runs (reduced size)"
set +e
bash hack/reliability.sh 2>&1 | tee "$dir/reliability.log" | grep -Ev '^ +[0-9]+: |^ +at '
reliability_status=${PIPESTATUS[0]}
set -e
if [ "$reliability_status" != 0 ]; then
  echo "the reliability runs failed (log: $dir/reliability.log)" >&2
  status=1
fi
# Coverage-guided fuzzing, a short run of every target (a long run: hack/fuzz.sh TARGET SECONDS).
echo "==> fuzzing: every target in fuzz/fuzz_targets for ${FUZZ_SECONDS:-15}s"
set +e
bash hack/fuzz.sh "" "${FUZZ_SECONDS:-15}" >"$dir/fuzz.log" 2>&1
fuzz_status=$?
set -e
grep -E '^== [a-z_]+: rc=|FAILED|panicked|Test unit written' "$dir/fuzz.log" || true
if [ "$fuzz_status" != 0 ]; then
  echo "fuzzing found a failure (inputs in fuzz/artifacts/, log in $dir/fuzz.log)" >&2
  status=1
fi
fuzz_passed=$(grep -Ec '^== [a-z_]+: rc=0 ' "$dir/fuzz.log" || true)
fuzz_targets=$(ls fuzz/fuzz_targets/*.rs | wc -l)
passed=$(grep -Eo '[0-9]+ passed' "$dir/cargo-test.log" | awk -v f="$fuzz_passed" '{s+=$1} END {print s+f}')
failed=$(grep -Eo '[0-9]+ failed' "$dir/cargo-test.log" | awk -v f="$(( fuzz_targets - fuzz_passed ))" '{s+=$1} END {print s+f}')
echo
echo "suite took $(( $(date +%s) - start ))s"
echo "summary: $passed passed, $failed failed"
if [ "$status" != 0 ]; then
  echo "logs of the control plane and operators: $dir" >&2
  cp -r "$dir" "$root/target/test-cluster-failed" 2>/dev/null || true
fi
exit "$status"
