#!/usr/bin/env bash
# The whole test suite, on a fresh machine: builds the control-plane binaries on first use (cached
# afterwards), starts etcd + kube-apiserver + kube-controller-manager on loopback, runs formatting
# and lint checks, then every unit, property and integration test, and stops the control plane.
#   usage: hack/test.sh [extra cargo test args]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

echo "==> tools: lua5.4 (runs the Argo CD health check), control-plane binaries"
if ! command -v lua5.4 >/dev/null 2>&1; then
  (apt-get install -y -qq lua5.4 >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq lua5.4 >/dev/null; }) \
    || { echo "cannot install lua5.4 (Debian package)" >&2; exit 1; }
fi
bash hack/control-plane-bin.sh >/dev/null

echo "==> cargo fmt --check, clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> building tests"
cargo test --workspace --no-run --quiet

dir="$root/target/test-cluster"
bash hack/cluster.sh down "$dir" >/dev/null 2>&1 || true
rm -rf "$dir"
echo "==> starting the control plane in $dir"
bash hack/cluster.sh up "$dir" >/dev/null
trap 'bash hack/cluster.sh down "$dir" >/dev/null 2>&1 || true' EXIT
export COST_ANALYSIS_CLUSTER_DIR="$dir"

echo "==> cargo test"
start=$(date +%s)
set +e
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$dir/cargo-test.log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '[0-9]+ passed' "$dir/cargo-test.log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$dir/cargo-test.log" | awk '{s+=$1} END {print s+0}')
echo
echo "suite took $(( $(date +%s) - start ))s"
echo "summary: $passed passed, $failed failed"
if [ "$status" != 0 ]; then
  echo "logs of the control plane and operators: $dir" >&2
  cp -r "$dir" "$root/target/test-cluster-failed" 2>/dev/null || true
fi
exit "$status"
