#!/usr/bin/env bash
# The main job, end to end, on a fresh machine: brings up a local control plane (building the
# binaries on first use), installs the CRDs, runs the operator (controller + API shim, registered
# with the aggregator), creates demo jobs that reach SUCCESS, FAILURE, TIMEOUT and CANCELED (a small
# demo worker reports task progress), shows `kubectl get caj,cajt`, then queries the jobs through
# the aggregated API (kubectl) and the SpaceONE REST API (curl with a ServiceAccount token).
# The control plane and the operator keep running afterwards so you can try things yourself;
# `hack/demo.sh down` stops everything.
# --in-cluster: the same demo with the operator installed by Helm on a real node instead of run as
# a local process: a control plane with a node (hack/cluster.sh up --node; root, one per machine),
# the image built offline and imported, the README's "Install on a cluster" block as written, and
# the REST API reached through the chart's Service; then the task runner turned on and a job whose
# templated tasks run as batch/v1 Jobs (one succeeds, one fails and says why). `hack/demo.sh
# --in-cluster down` stops it.
#   usage: hack/demo.sh [--in-cluster] [up|down]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
incluster=0
if [ "${1:-}" = --in-cluster ]; then incluster=1; shift; fi
dir="$root/target/demo"
[ "$incluster" = 1 ] && dir="$root/target/demo-node"
ns=demo

if [ "${1:-up}" = down ]; then
  if [ -f "$dir/operator.pid" ]; then
    kill "$(cat "$dir/operator.pid")" 2>/dev/null || true
    rm -f "$dir/operator.pid"
  fi
  bash hack/cluster.sh down "$dir"
  exit 0
fi

if [ "$incluster" = 1 ]; then
  echo "==> starting a control plane with a node (the first run installs containerd, buildah, builds kubelet: ~10 min)"
  bash hack/cluster.sh up --node "$dir" >/dev/null
  # shellcheck disable=SC1091
  source "$dir/env"
  export KUBECONFIG CONTAINERD_ADDRESS PATH="$BIN:$PATH"
  kubectl() { "$BIN/kubectl" "$@"; }
  echo "==> the README's \"Install on a cluster\", as written:"
  block=$(sed -n '/<!-- install-on-a-cluster:begin -->/,/<!-- install-on-a-cluster:end -->/p' README.md |
    sed -n '/^```bash$/,/^```$/p' | sed '1d;$d')
  echo "$block" | sed 's/^/    /'
  if helm status cost-analysis-operator -n cost-analysis-system >/dev/null 2>&1; then
    echo "    (already installed: helm upgrade instead)"
    hack/image.sh >/dev/null
    ctr -n k8s.io images import "${CARGO_TARGET_DIR:-target}/image/cost-analysis-operator.tar" >/dev/null
    helm upgrade cost-analysis-operator charts/cost-analysis-operator -n cost-analysis-system --wait >/dev/null
  else
    bash -euo pipefail -c "$block"
  fi
  svc=cost-analysis-operator-api.cost-analysis-system.svc
  ip=$(kubectl get svc cost-analysis-operator-api -n cost-analysis-system -o jsonpath='{.spec.clusterIP}')
  kubectl get apiservice v1.query.cost-analysis.spaceone.dev -o jsonpath='{.spec.caBundle}' | base64 -d >"$dir/shim-ca.crt"
  rest_url="https://$svc"
  rest_curl=(--cacert "$dir/shim-ca.crt" --resolve "$svc:443:$ip")
else

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

echo "==> starting the operator: controller + API shim (log: $dir/operator.log)"
if [ -f "$dir/operator.pid" ] && kill -0 "$(cat "$dir/operator.pid")" 2>/dev/null; then
  kill "$(cat "$dir/operator.pid")"; sleep 1
fi
shim_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()')
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=cost-analysis-api" \
  -addext "subjectAltName=DNS:api.cost-analysis-system.svc,DNS:localhost,IP:127.0.0.1" \
  -keyout "$dir/shim.key" -out "$dir/shim.crt" 2>/dev/null
nohup "${CARGO_TARGET_DIR:-$root/target}/release/cost-analysis-operator" run --metrics-addr 127.0.0.1:0 --lease-duration 5 \
  --api-addr "127.0.0.1:$shim_port" --tls-cert-file "$dir/shim.crt" --tls-key-file "$dir/shim.key" \
  >"$dir/operator.log" 2>&1 &
echo $! >"$dir/operator.pid"
# The aggregator reaches the shim on loopback through an ExternalName Service (no kube-proxy here).
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: cost-analysis-system}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: cost-analysis-system}
spec: {type: ExternalName, externalName: 127.0.0.1}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1.query.cost-analysis.spaceone.dev}
spec:
  group: query.cost-analysis.spaceone.dev
  version: v1
  service: {namespace: cost-analysis-system, name: api, port: $shim_port}
  caBundle: $(base64 -w0 "$dir/shim.crt")
  groupPriorityMinimum: 1000
  versionPriority: 15
YAML
rest_url="https://127.0.0.1:$shim_port"
rest_curl=(--cacert "$dir/shim.crt")
fi

kubectl delete namespace "$ns" --ignore-not-found --wait=false >/dev/null
for _ in $(seq 100); do kubectl get namespace "$ns" >/dev/null 2>&1 || break; sleep 0.3; done
kubectl create namespace "$ns" >/dev/null
echo "==> creating demo jobs"
kubectl apply -n "$ns" -f examples/demo-jobs.yaml

report() { # task status [error code] [error message]
  local now extra
  now=$(date -u +%Y-%m-%dT%H:%M:%S.000Z)
  if [ "$2" = IN_PROGRESS ]; then extra=",\"startedAt\":\"$now\""; else extra=",\"finishedAt\":\"$now\",\"createdCount\":42"; fi
  if [ $# -ge 4 ]; then extra="$extra,\"errorCode\":\"$3\",\"errorMessage\":\"$4\""; fi
  kubectl patch cajt "$1" -n "$ns" --subresource=status --type=merge \
    -p "{\"status\":{\"status\":\"$2\"$extra}}" >/dev/null
  echo "    worker: $1 -> $2"
}
wait_task() { for _ in $(seq 100); do kubectl get cajt "$1" -n "$ns" >/dev/null 2>&1 && return; sleep 0.2; done; }

echo "==> the demo worker runs the tasks"
for t in demo-success.extract demo-success.transform demo-success.load demo-failure.a demo-cancel.a; do wait_task "$t"; done
report demo-success.extract IN_PROGRESS
report demo-success.extract SUCCESS
report demo-failure.a IN_PROGRESS
report demo-cancel.a SUCCESS
report demo-success.transform SUCCESS
kubectl get caj -n "$ns"
report demo-failure.a FAILURE ERROR_SYNC "the data source answered 503"
report demo-success.load SUCCESS
echo "==> an operator cancels demo-cancel:  kubectl patch caj demo-cancel --type merge -p '{\"spec\":{\"cancel\":true}}'"
kubectl patch caj demo-cancel -n "$ns" --type merge -p '{"spec":{"cancel":true}}' >/dev/null
echo "==> kubectl wait --for=condition=Finished caj --all (demo-timeout times out after 10 s)"
kubectl wait -n "$ns" --for=condition=Finished caj --all --timeout=60s
echo
kubectl get caj,cajt -n "$ns"
echo
kubectl get events -n "$ns" --field-selector involvedObject.kind=CostAnalysisJob \
  -o custom-columns=TYPE:.type,REASON:.reason,OBJECT:.involvedObject.name,MESSAGE:.message | head -20

if [ "$incluster" = 1 ]; then
  echo
  echo "==> the task runner: a task with a pod template runs as a batch/v1 Job (taskRunner.enabled)"
  eval "$(bash hack/task-image.sh)"   # IMAGE, ARCHIVE: a static busybox, FROM scratch, offline
  ctr -n k8s.io images import "$ARCHIVE" >/dev/null
  helm upgrade cost-analysis-operator charts/cost-analysis-operator -n cost-analysis-system --reuse-values \
    --set taskRunner.enabled=true --set "taskRunner.namespaces={$ns}" --wait >/dev/null
  kubectl apply -n "$ns" -f - <<YAML
apiVersion: cost-analysis.spaceone.dev/v1
kind: CostAnalysisJob
metadata: {name: demo-runner}
spec:
  domainId: domain-demo
  dataSourceId: ds-runner
  tasks:
  - id: sync
    template:
      spec:
        restartPolicy: Never
        containers:
        - name: sync
          image: $IMAGE
          imagePullPolicy: Never
          command: [sh, -c, 'echo "syncing \$SPACEONE_JOB_TASK_ID of \$SPACEONE_JOB_ID"; sleep 2']
  - id: flaky
    backoffLimit: 1
    template:
      spec:
        restartPolicy: Never
        containers:
        - name: flaky
          image: $IMAGE
          imagePullPolicy: Never
          command: [sh, -c, 'echo "the source refused the credentials" >/dev/termination-log; exit 1']
YAML
  kubectl wait -n "$ns" --for=condition=Finished caj/demo-runner --timeout=180s >/dev/null || true
  kubectl get caj demo-runner -n "$ns"
  kubectl get cajt -n "$ns" -l cost-analysis.spaceone.dev/job=demo-runner
  kubectl get jobs.batch,pods -n "$ns"
  echo "    why demo-runner failed (its flaky task, from the last pod's termination message):"
  kubectl get cajt demo-runner.flaky -n "$ns" -o jsonpath='{.status.errorCode}: {.status.errorMessage}{"\n"}'
fi

echo
echo "==> the aggregated API: kubectl get jobs.query.cost-analysis.spaceone.dev -n $ns"
kubectl wait --for=condition=Available --timeout=60s apiservice/v1.query.cost-analysis.spaceone.dev >/dev/null
kubectl get jobs.query.cost-analysis.spaceone.dev -n "$ns"
echo
echo "==> their tasks: kubectl get jobtasks.query.cost-analysis.spaceone.dev -n $ns"
kubectl get jobtasks.query.cost-analysis.spaceone.dev -n "$ns"
echo
echo "==> a JobStat: kubectl create -f examples/jobstat.yaml -o jsonpath='{.status}'"
kubectl create -n "$ns" -f examples/jobstat.yaml -o jsonpath='{.status}'
echo
echo
echo "==> the SpaceONE REST API, as a ServiceAccount allowed to read domain-demo (examples/rbac-domains.yaml)"
kubectl apply -f examples/rbac-domains.yaml >/dev/null
kubectl create serviceaccount spaceone-client -n "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create clusterrolebinding demo-spaceone-client --clusterrole=cost-analysis-domain-demo-reader \
  --serviceaccount="$ns:spaceone-client" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
token=$(kubectl create token spaceone-client -n "$ns")
body='{"domain_id": "domain-demo", "query": {"filter": [{"k": "status", "v": "SUCCESS", "o": "eq"}], "only": ["job_id", "status"]}}'
echo "curl $rest_url/cost-analysis/v1/jobs/search -H 'Authorization: Bearer ...' -d '$body'"
out=""
for _ in $(seq 50); do
  out=$(curl -sS "${rest_curl[@]}" -H "Authorization: Bearer $token" \
    "$rest_url/cost-analysis/v1/jobs/search" -d "$body" 2>/dev/null) && break
  sleep 0.2
done
echo "$out" | python3 -m json.tool
echo
echo "==> which task failed demo-failure, and why: SpaceONE's JobTask API"
body='{"domain_id": "domain-demo", "job_id": "demo-failure", "status": "FAILURE"}'
echo "curl $rest_url/cost-analysis/v1/job-tasks/search -H 'Authorization: Bearer ...' -d '$body'"
curl -sS "${rest_curl[@]}" -H "Authorization: Bearer $token" \
  "$rest_url/cost-analysis/v1/job-tasks/search" -d "$body" | python3 -m json.tool

cat <<MSG

The control plane and the operator keep running. Try:
  export KUBECONFIG=$KUBECONFIG PATH=$BIN:\$PATH
  kubectl get caj -n $ns -o yaml
  kubectl explain caj.spec
  kubectl get jobs.query.cost-analysis.spaceone.dev -A
  kubectl get jobtasks.query.cost-analysis.spaceone.dev -A --field-selector status.status=FAILURE
  curl ${rest_curl[*]} -H "Authorization: Bearer \$(kubectl create token spaceone-client -n $ns)" \\
    "$rest_url/cost-analysis/v1/jobs?domain_id=domain-demo"
  curl ${rest_curl[*]} -H "Authorization: Bearer \$(kubectl create token spaceone-client -n $ns)" \\
    "$rest_url/cost-analysis/v1/job-tasks?domain_id=domain-demo&job_id=demo-failure"
Stop everything with: hack/demo.sh $([ "$incluster" = 1 ] && echo "--in-cluster ")down
MSG
