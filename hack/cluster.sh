#!/usr/bin/env bash
# A real, loopback-only Kubernetes control plane for tests and the demo: etcd 3.6, kube-apiserver
# (with the aggregation layer) and kube-controller-manager running only the garbage-collector,
# namespace and clusterrole-aggregation controllers (so ownerReference cascade deletion, namespace
# deletion and aggregated ClusterRoles really happen).
# No kubelet, scheduler or other controllers: Pods never run.
# With --node it also starts a real node (one per machine; hack/node.sh, docs/control-plane.md):
# containerd, kubelet, kube-scheduler, kube-proxy, a bridge CNI, the controllers pods need, and the
# API server flags for in-cluster clients. Pods then run, from images imported into its containerd.
#   usage: hack/cluster.sh up [--node] WORKDIR   start (fresh etcd data and PKI), print WORKDIR/env;
#                                         if all processes are already running, just print the env
#          hack/cluster.sh down WORKDIR   stop the processes (by pid, reverse order); logs are kept;
#                                         a node's pods, mounts, bridge, iptables chains go too
#          hack/cluster.sh env  WORKDIR   print WORKDIR/env (shell-sourceable KEY='value' lines)
# WORKDIR gets: env, kubeconfig (admin, system:masters), pki/, etcd/, *.pid, *.log
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
usage() { sed -n '10,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
node=0
if [ $# -eq 3 ] && [ "$1" = up ] && [ "$2" = --node ]; then node=1; set -- "$1" "$3"; fi
[ $# -eq 2 ] || usage
cmd=$1
W=$(realpath -m "$2")
# A directory once started with --node stays a node cluster for down and env (hack/node.sh's record).
[ -f "$W/node/marker" ] && [ "$cmd" != up ] && node=1
P=$W/pki
log() { echo "cluster: $*" >&2; }

# name -> binary; start order (down goes in reverse)
procs=(etcd apiserver controller-manager)
declare -A exe=([etcd]=etcd [apiserver]=kube-apiserver [controller-manager]=kube-controller-manager)
if [ "$node" = 1 ]; then
  procs+=(containerd kubelet scheduler proxy)
  exe+=([containerd]=containerd [kubelet]=kubelet [scheduler]=kube-scheduler [proxy]=kube-proxy)
fi

pid_of() { # name -> pid, if the pid file names a live (non-zombie) process of the expected binary
  local f="$W/$1.pid" pid
  [ -f "$f" ] || return 1
  pid=$(cat "$f")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  [ "$(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)" 2>/dev/null)" = "${exe[$1]}" ] || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
  echo "$pid"
}

stop() { # name
  local pid i
  if pid=$(pid_of "$1"); then
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 150); do pid_of "$1" >/dev/null || break; sleep 0.1; done
    if pid_of "$1" >/dev/null; then
      log "$1 (pid $pid) did not exit after 15s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      for i in $(seq 50); do pid_of "$1" >/dev/null || break; sleep 0.1; done
    fi
  fi
  rm -f "$W/$1.pid"
}

down() {
  local i
  if [ "$node" = 1 ]; then node_down; return; fi
  for ((i = ${#procs[@]} - 1; i >= 0; i--)); do stop "${procs[i]}"; done
}
if [ "$node" = 1 ]; then
  # shellcheck source=node.sh
  . "$root/hack/node.sh"
fi

case $cmd in
  down) down; exit 0 ;;
  env)
    [ -f "$W/env" ] || { log "no $W/env (run: hack/cluster.sh up $W)"; exit 1; }
    cat "$W/env"; exit 0 ;;
  up) ;;
  *) usage ;;
esac

# ---------------------------------------------------------------------------------------------- up
running=0
for p in "${procs[@]}"; do pid_of "$p" >/dev/null && running=$((running + 1)); done
if [ "$running" = "${#procs[@]}" ] && [ -f "$W/env" ]; then cat "$W/env"; exit 0; fi
[ "$running" = 0 ] || { log "some processes of $W are running, others not: restarting"; down; }

t_start=$SECONDS
if [ "$node" = 1 ]; then
  node_prepare   # packages, the lock, the bridge (the API server advertises its address)
  BIN=$(bash "$root/hack/control-plane-bin.sh" --node)
else
  BIN=$(bash "$root/hack/control-plane-bin.sh")
fi
t_bin=$SECONDS
# shellcheck source=../tools/versions.env
. "$root/tools/versions.env"

fail() { # message [log-name]
  log "$1"
  if [ -n "${2:-}" ] && [ -f "$W/$2.log" ]; then
    log "last lines of $W/$2.log:"
    tail -n 40 "$W/$2.log" >&2
  fi
  down
  exit 1
}

rm -rf "$W/etcd" "$P" "$W/env" "$W/kubeconfig"
mkdir -p "$W/etcd" "$P"
read -r ETCD_PORT PEER_PORT API_PORT KCM_PORT KUBELET_PORT KUBELET_HEALTHZ_PORT PROXY_METRICS_PORT PROXY_HEALTHZ_PORT < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(8)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks: s.close()')

# --- PKI (ECDSA P-256, like envtest; valid 30 days; regenerated on every up)
cat >"$P/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = placeholder
[ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
[server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1
[client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
EOF
if [ "$node" = 1 ]; then
  cat >>"$P/openssl.cnf" <<EOF
[node-apiserver]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$NODE_API_SERVICE_IP,IP:$NODE_GATEWAY
[kubelet]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost,IP:127.0.0.1,DNS:$NODE_NAME
EOF
fi
ossl() { openssl "$@" >>"$P/openssl.log" 2>&1 || fail "openssl $1 failed" pki/openssl; }
ca() { # name
  ossl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$P/$1.key" \
    -out "$P/$1.crt" -days 30 -subj "/CN=$1" -config "$P/openssl.cnf" -extensions ca
}
leaf() { # name subject extension-section ca
  ossl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 -keyout "$P/$1.key" \
    -out "$P/$1.csr" -subj "$2" -config "$P/openssl.cnf"
  ossl x509 -req -in "$P/$1.csr" -CA "$P/$4.crt" -CAkey "$P/$4.key" \
    -set_serial "0x$(openssl rand -hex 8)" -days 30 -out "$P/$1.crt" \
    -extfile "$P/openssl.cnf" -extensions "$3"
  rm -f "$P/$1.csr"
}
ca ca
if [ "$node" = 1 ]; then
  leaf apiserver "/CN=kube-apiserver" node-apiserver ca
  leaf kubelet "/CN=$NODE_NAME" kubelet ca
  leaf scheduler "/CN=system:kube-scheduler" client ca
  leaf proxy "/CN=system:kube-proxy" client ca
else
  leaf apiserver "/CN=kube-apiserver" server ca
fi
leaf controller-manager-serving "/CN=kube-controller-manager" server ca
leaf admin "/O=system:masters/CN=admin" client ca
leaf controller-manager "/CN=system:kube-controller-manager" client ca
ca front-proxy-ca
leaf front-proxy-client "/CN=front-proxy-client" client front-proxy-ca
# SEC1 "EC PRIVATE KEY" plus its public half: the apiserver's key-file parser does not read PKCS#8.
ossl ecparam -name prime256v1 -genkey -noout -out "$P/sa.key"
ossl ec -in "$P/sa.key" -pubout -out "$P/sa.pub"
chmod 600 "$P"/*.key

b64() { base64 -w0 "$1"; }
kubeconfig() { # file user cert-name
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(b64 "$P/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(b64 "$P/$3.crt")
    client-key-data: $(b64 "$P/$3.key")
contexts:
- name: local
  context: {cluster: local, user: $2}
current-context: local
EOF
  chmod 600 "$1"
}
kubeconfig "$W/kubeconfig" admin admin
kubeconfig "$W/controller-manager.kubeconfig" system:kube-controller-manager controller-manager
if [ "$node" = 1 ]; then
  kubeconfig "$W/scheduler.kubeconfig" system:kube-scheduler scheduler
  kubeconfig "$W/proxy.kubeconfig" system:kube-proxy proxy
fi

launch() { # name args... : background, detached from our stdio, pid file
  local name=$1 path; shift
  path=$BIN/${exe[$name]}
  [ -x "$path" ] || path=$(command -v "${exe[$name]}")
  "$path" "$@" </dev/null >"$W/$name.log" 2>&1 &
  echo $! >"$W/$name.pid"
}
wait_for() { # name timeout-seconds what command...
  local name=$1 deadline=$((SECONDS + $2)) what=$3; shift 3
  until "$@" >/dev/null 2>&1; do
    pid_of "$name" >/dev/null || fail "$name exited before $what" "$name"
    [ "$SECONDS" -lt "$deadline" ] || fail "$name: no $what after $(($2))s" "$name"
    sleep 0.2
  done
}

# --- etcd (8 GiB quota, not the default 2: the memory test at 100,000 jobs keeps ~0.9 GB live and
# a compaction interval's history beside it; the file is sparse, nothing is allocated up front)
launch etcd --name=test --data-dir="$W/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$PEER_PORT" \
  --initial-cluster="test=http://127.0.0.1:$PEER_PORT" --listen-metrics-urls="" \
  --unsafe-no-fsync=true --log-level=warn --quota-backend-bytes=8589934592
etcd_healthy() { curl -fsS "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
wait_for etcd 30 "healthy /health" etcd_healthy
t_etcd=$SECONDS

# --- kube-apiserver (flags: docs/control-plane.md)
if [ "$node" = 1 ]; then
  # In-cluster clients reach it as Service kubernetes (NODE_API_SERVICE_IP) -> the bridge gateway
  # (kube-proxy); the ServiceAccount admission plugin gives pods their projected token; logs, exec
  # and port-forward reach the kubelet by the node's name, which resolves to 127.0.0.1.
  api_net=(--bind-address=0.0.0.0 --advertise-address="$NODE_GATEWAY" --endpoint-reconciler-type=lease
    --service-cluster-ip-range="$NODE_SERVICE_CIDR" --kubelet-preferred-address-types=Hostname)
else
  api_net=(--bind-address=127.0.0.1 --advertise-address=127.0.0.1 --endpoint-reconciler-type=none
    --service-cluster-ip-range=10.0.0.0/24 --disable-admission-plugins=ServiceAccount)
fi
launch apiserver \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --secure-port="$API_PORT" "${api_net[@]}" \
  --cert-dir="$P" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" \
  --service-account-issuer="https://127.0.0.1:$API_PORT/" \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --authorization-mode=RBAC --allow-privileged=true \
  --requestheader-client-ca-file="$P/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$P/front-proxy-client.crt" --proxy-client-key-file="$P/front-proxy-client.key"
admin=(--cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key")
api_ready() { [ "$(curl -sS --cacert "$P/ca.crt" "https://127.0.0.1:$API_PORT/readyz")" = ok ]; }
default_ns() { curl -fsS "${admin[@]}" "https://127.0.0.1:$API_PORT/api/v1/namespaces/default"; }
wait_for apiserver 120 "ok from /readyz" api_ready
wait_for apiserver 60 "default namespace" default_ns
t_api=$SECONDS

# --- kube-controller-manager: only the garbage-collector, namespace and clusterrole-aggregation
# controllers (the chart's roles aggregate into view/edit/admin). Each controller
# uses its own ServiceAccount token (the bootstrap system:controller:* roles), as in a real cluster:
# the system:kube-controller-manager user itself may not delete arbitrary objects.
controllers=garbage-collector-controller,namespace-controller,clusterrole-aggregation-controller kcm_node=()
if [ "$node" = 1 ]; then
  # What pods need (docs/control-plane.md): Deployments, the not-ready taint lifted, default
  # ServiceAccounts, kube-root-ca.crt, Service backends, PodDisruptionBudget status, hygiene.
  controllers+=,deployment-controller,replicaset-controller,node-lifecycle-controller
  controllers+=,serviceaccount-controller,root-ca-certificate-publisher-controller
  controllers+=,endpointslice-controller,endpoints-controller,endpointslice-mirroring-controller
  controllers+=,disruption-controller,pod-garbage-collector-controller,taint-eviction-controller
  controllers+=,ttl-controller
  # batch/v1 Jobs: the task runner runs templated tasks as Jobs.
  controllers+=,job-controller
  kcm_node=(--root-ca-file="$P/ca.crt")
fi
launch controller-manager \
  --kubeconfig="$W/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$W/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$W/controller-manager.kubeconfig" \
  --controllers="$controllers" "${kcm_node[@]}" \
  --use-service-account-credentials=true --leader-elect=false \
  --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
  --tls-cert-file="$P/controller-manager-serving.crt" --tls-private-key-file="$P/controller-manager-serving.key" \
  --client-ca-file="$P/ca.crt" --requestheader-client-ca-file="$P/front-proxy-ca.crt"
kcm_healthy() { [ "$(curl -sS --cacert "$P/ca.crt" "https://127.0.0.1:$KCM_PORT/healthz")" = ok ]; }
wait_for controller-manager 60 "ok from /healthz" kcm_healthy
t_kcm=$SECONDS
t_node=$SECONDS
if [ "$node" = 1 ]; then node_up; t_node=$SECONDS; fi

cat >"$W/env.tmp" <<EOF
KUBECONFIG='$W/kubeconfig'
BIN='$BIN'
PKI='$P'
API_PORT=$API_PORT
API_SERVER='https://127.0.0.1:$API_PORT'
ETCD_PORT=$ETCD_PORT
ETCD_ENDPOINT='http://127.0.0.1:$ETCD_PORT'
KCM_PORT=$KCM_PORT
K8S_VERSION=$K8S_VERSION
CLUSTER_DIR='$W'
EOF
if [ "$node" = 1 ]; then node_env >>"$W/env.tmp"; fi
mv "$W/env.tmp" "$W/env"
log "up in $((SECONDS - t_start))s (binaries $((t_bin - t_start))s, etcd $((t_etcd - t_bin))s," \
  "apiserver $((t_api - t_etcd))s, controller-manager $((t_kcm - t_api))s, node $((t_node - t_kcm))s); logs in $W"
cat "$W/env"
