#!/usr/bin/env bash
# The main job, end to end, on a fresh machine: brings up a local control plane (building the
# binaries on first use), installs the CRDs, runs the operator, creates demo jobs that reach
# SUCCESS, FAILURE, TIMEOUT and CANCELED (a small demo worker reports task progress), and shows
# `kubectl get caj,cajt`. The control plane and the operator keep running afterwards so you can
# try kubectl yourself; `hack/demo.sh down` stops everything.
#   usage: hack/demo.sh [up|down]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
dir="$root/target/demo"
ns=demo

if [ "${1:-up}" = down ]; then
  if [ -f "$dir/operator.pid" ]; then
    kill "$(cat "$dir/operator.pid")" 2>/dev/null || true
    rm -f "$dir/operator.pid"
  fi
  bash hack/cluster.sh down "$dir"
  exit 0
fi

echo "==> building the operator"
cargo build --release --quiet
echo "==> starting the control plane (the first run builds kube-apiserver, etcd, kubectl: ~10-20 min)"
bash hack/cluster.sh up "$dir" >/dev/null
# shellcheck disable=SC1091
source "$dir/env"
export KUBECONFIG
kubectl() { "$BIN/kubectl" "$@"; }

echo "==> installing the CRDs"
kubectl apply --server-side -f crds/ >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd --all >/dev/null

echo "==> starting the operator (log: $dir/operator.log)"
if [ -f "$dir/operator.pid" ] && kill -0 "$(cat "$dir/operator.pid")" 2>/dev/null; then
  kill "$(cat "$dir/operator.pid")"; sleep 1
fi
nohup "$root/target/release/cost-analysis-operator" controller --metrics-addr 127.0.0.1:0 \
  --lease-duration 5 >"$dir/operator.log" 2>&1 &
echo $! >"$dir/operator.pid"

kubectl delete namespace "$ns" --ignore-not-found --wait=false >/dev/null
for _ in $(seq 100); do kubectl get namespace "$ns" >/dev/null 2>&1 || break; sleep 0.3; done
kubectl create namespace "$ns" >/dev/null
echo "==> creating demo jobs"
kubectl apply -n "$ns" -f examples/demo-jobs.yaml

report() { # task status
  local now; now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
  local extra=""
  [ "$2" = IN_PROGRESS ] && extra=",\"startedAt\":\"$now\"" || extra=",\"finishedAt\":\"$now\",\"createdCount\":42"
  kubectl patch cajt "$1" -n "$ns" --subresource=status --type=merge \
    -p "{\"status\":{\"status\":\"$2\"$extra}}" >/dev/null
  echo "    worker: $1 -> $2"
}
wait_task() { for _ in $(seq 100); do kubectl get cajt "$1" -n "$ns" >/dev/null 2>&1 && return; sleep 0.2; done; }

echo "==> the demo worker runs the tasks"
for t in demo-success-extract demo-success-transform demo-success-load demo-failure-a demo-cancel-a; do wait_task "$t"; done
report demo-success-extract IN_PROGRESS
report demo-success-extract SUCCESS
report demo-failure-a IN_PROGRESS
report demo-cancel-a SUCCESS
report demo-success-transform SUCCESS
kubectl get caj -n "$ns"
report demo-failure-a FAILURE
report demo-success-load SUCCESS
echo "==> an operator cancels demo-cancel:  kubectl patch caj demo-cancel --type merge -p '{\"spec\":{\"cancel\":true}}'"
kubectl patch caj demo-cancel -n "$ns" --type merge -p '{"spec":{"cancel":true}}' >/dev/null
echo "==> kubectl wait --for=condition=Finished caj --all (demo-timeout times out after 10 s)"
kubectl wait -n "$ns" --for=condition=Finished caj --all --timeout=60s
echo
kubectl get caj,cajt -n "$ns"
echo
kubectl get events -n "$ns" --field-selector involvedObject.kind=CostAnalysisJob \
  -o custom-columns=TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message | head -20
cat <<MSG

The control plane and the operator keep running. Try:
  export KUBECONFIG=$KUBECONFIG PATH=$BIN:\$PATH
  kubectl get caj -n $ns -o yaml
  kubectl explain caj.spec
Stop everything with: hack/demo.sh down
MSG
