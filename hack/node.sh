# shellcheck shell=bash
# The node half of `hack/cluster.sh up --node DIR` (sourced by cluster.sh, not run on its own): a
# single real node on this machine, after docs/control-plane.md ("A node"):
#   containerd (Debian's, with runc and the CRI plugin; private root, state and socket under DIR/node),
#   a pause image built here (no registry), a bridge CNI (cni-cao0, 10.244.0.0/24, host-local IPAM),
#   kubelet (cgroupfs, cgroup v1 allowed, anonymous + AlwaysAllow on 127.0.0.1 only),
#   kube-scheduler, kube-proxy (iptables; Services in 10.96.0.0/24, Service kubernetes = 10.96.0.1).
# The host-global parts are fixed (kubelet cgroups under /kubepods, the bridge, iptables chains), so
# there is one node per machine: a lock names the DIR that owns it. `down` deletes the pods, stops
# everything by pid, kills leftover containers, unmounts what is under DIR, deletes the bridge, the
# KUBE-* iptables chains, the libcni cache entries and log symlinks, and restores the sysctls the
# kubelet changed. Normal (no-node) clusters keep running next to it: they use 10.0.0.0/24 and have
# no kube-proxy, so nothing here touches them.

N=$W/node
NODE_BRIDGE=cni-cao0
NODE_POD_CIDR=10.244.0.0/24
NODE_GATEWAY=10.244.0.1
NODE_SERVICE_CIDR=10.96.0.0/24
NODE_API_SERVICE_IP=10.96.0.1
NODE_LOCK=/run/cost-analysis-operator-node.lock
NODE_OWNER=/run/cost-analysis-operator-node.owner
# The API server reaches the kubelet (logs, exec, port-forward) by the node's name; the kubelet
# serves on 127.0.0.1 only, so the name must resolve to a loopback address.
NODE_NAME=$(hostname)
case $(getent ahostsv4 "$NODE_NAME" 2>/dev/null | awk 'NR == 1 {print $1}') in
  127.*) ;;
  *) NODE_NAME=localhost ;;
esac
CONTAINERD_ADDRESS=$N/containerd/containerd.sock
# Sysctls the kubelet sets (KernelTunableModify); down puts the old values back.
node_sysctls=(vm/overcommit_memory kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

nlog() { echo "cluster(node): $*" >&2; }
ctr_() { ctr --address "$CONTAINERD_ADDRESS" -n k8s.io "$@"; }

node_install() {
  local missing=() c
  for c in containerd:containerd runc:runc iptables:iptables conntrack:conntrack ip:iproute2 \
    buildah:buildah cc:gcc; do
    command -v "${c%%:*}" >/dev/null 2>&1 || missing+=("${c#*:}")
  done
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  [ ${#missing[@]} = 0 ] && return 0
  nlog "installing ${missing[*]} (Debian)"
  apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null; } ||
    { nlog "cannot install ${missing[*]}"; exit 1; }
}

node_alive() { # dir: does a node cluster in dir still run any of its processes?
  local f pid
  for f in apiserver containerd kubelet; do
    pid=$(cat "$1/$f.pid" 2>/dev/null) || continue
    [[ $pid =~ ^[0-9]+$ ]] || continue
    case $(basename "$(readlink "/proc/$pid/exe" 2>/dev/null)" 2>/dev/null) in
      kube-apiserver | containerd | kubelet) return 0 ;;
    esac
  done
  return 1
}

node_prepare() {
  [ "$(id -u)" = 0 ] || { nlog "a node needs root"; exit 1; }
  node_install
  # The lock: one node per machine. flock makes check-and-take atomic; the owner file is the lock.
  exec 8>"$NODE_LOCK"
  flock 8
  local owner
  owner=$(cat "$NODE_OWNER" 2>/dev/null || true)
  if [ -n "$owner" ] && [ "$owner" != "$W" ]; then
    if node_alive "$owner"; then
      nlog "a node cluster is already running on this machine, in $owner (one per machine);" \
        "stop it with: hack/cluster.sh down $owner"
      exit 1
    fi
    nlog "cleaning up after the stopped node cluster in $owner"
    bash "$root/hack/cluster.sh" down "$owner" >&2 || true
  fi
  echo "$W" >"$NODE_OWNER"
  flock -u 8
  # A previous run in this directory may have left state: start from nothing.
  if [ -f "$N/marker" ]; then node_down; echo "$W" >"$NODE_OWNER"; fi
  rm -rf "$N"
  mkdir -p "$N"
  : >"$N/marker"
  local s
  for s in "${node_sysctls[@]}"; do echo "$s $(cat "/proc/sys/$s" 2>/dev/null)"; done >"$N/sysctls"
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
  fi
  ip addr replace "$NODE_GATEWAY/24" dev "$NODE_BRIDGE"
  ip link set "$NODE_BRIDGE" up
  # The host reaches ClusterIPs (the aggregator, tests) from the bridge address; kube-proxy DNATs.
  ip route replace "$NODE_SERVICE_CIDR" dev "$NODE_BRIDGE" src "$NODE_GATEWAY"
}

node_env() {
  cat <<EOF
NODE=1
NODE_NAME='$NODE_NAME'
CONTAINERD_ADDRESS='$CONTAINERD_ADDRESS'
NODE_POD_CIDR='$NODE_POD_CIDR'
NODE_SERVICE_CIDR='$NODE_SERVICE_CIDR'
NODE_GATEWAY='$NODE_GATEWAY'
EOF
}

node_pause_image() { # a static pause binary in a FROM-scratch image, built and imported here
  local d=$N/pause b
  mkdir -p "$d/context"
  cat >"$d/pause.c" <<'EOF'
#include <signal.h>
#include <unistd.h>
static void done(int sig) { (void)sig; _exit(0); }
int main(void) {
  signal(SIGINT, done);
  signal(SIGTERM, done);
  for (;;) pause();
}
EOF
  cc -static -Os -o "$d/context/pause" "$d/pause.c" 2>>"$d/build.log" || fail "cannot build the pause binary" node/pause/build
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' >"$d/Dockerfile"
  b=(buildah --root "$d/storage" --runroot "$d/run" --storage-driver vfs)
  local had_containers_dir=0   # buildah push writes /var/lib/containers/cache (see hack/image.sh)
  [ -e /var/lib/containers ] && had_containers_dir=1
  { "${b[@]}" bud --quiet --pull=never -t localhost/pause:local -f "$d/Dockerfile" "$d/context" &&
    "${b[@]}" push --quiet localhost/pause:local "docker-archive:$d/pause.tar:localhost/pause:local"; } \
    >>"$d/build.log" 2>&1 || fail "cannot build the pause image" node/pause/build
  rm -rf "$d/storage" "$d/run"
  [ "$had_containers_dir" = 1 ] || rm -rf /var/lib/containers
  ctr_ images import "$d/pause.tar" >>"$d/build.log" 2>&1 || fail "cannot import the pause image" node/pause/build
}

node_up() {
  local c=$N/containerd
  mkdir -p "$c" "$N/cni/net.d" "$N/cni/ipam" "$N/kubelet" "$N/pod-logs"
  cat >"$c/config.toml" <<EOF
version = 2
root = "$c/root"
state = "$c/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_ADDRESS"
[ttrpc]
  address = "$c/containerd.ttrpc.sock"
[debug]
  address = "$c/debug.sock"
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:local"
  # Root here lacks CAP_SYS_RESOURCE: without this every sandbox fails (runc cannot lower
  # oom_score_adj to the kubelet's -998). Scores are clamped to containerd's own.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$c/runc"
        BinaryName = "$(command -v runc)"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$N/cni/net.d"
EOF
  cat >"$N/cni/net.d/10-cao.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "cao",
  "plugins": [{
    "type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
    "ipam": {"type": "host-local", "dataDir": "$N/cni/ipam",
             "ranges": [[{"subnet": "$NODE_POD_CIDR", "gateway": "$NODE_GATEWAY"}]],
             "routes": [{"dst": "0.0.0.0/0"}]}
  }]
}
EOF
  launch containerd --config "$c/config.toml"
  wait_for containerd 30 "its socket" ctr_ version
  node_pause_image

  cat >"$N/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $KUBELET_PORT
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
readOnlyPort: 0
tlsCertFile: $P/kubelet.crt
tlsPrivateKeyFile: $P/kubelet.key
# cluster.sh's API server has no kubelet client certificate: logs, exec and port-forward arrive
# anonymously. Safe only because the kubelet listens on 127.0.0.1.
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$CONTAINERD_ADDRESS
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
staticPodPath: ""
podLogsDir: $N/pod-logs
volumePluginDir: $N/kubelet/volume-plugins
resolvConf: /etc/resolv.conf
clusterDomain: cluster.local
# Never collect images (they were imported, nothing can pull them again); no eviction and so no
# disk-pressure taint for a disk that other builds on this machine fill and empty (with 1% thresholds
# the node was tainted for minutes after a dip, and nothing could be scheduled).
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {}
serializeImagePulls: false
EOF
  node_kubeconfig() { # file
    kubeconfig "$1" admin admin
  }
  node_kubeconfig "$N/kubelet/kubeconfig"
  launch kubelet --config="$N/kubelet/config.yaml" --kubeconfig="$N/kubelet/kubeconfig" \
    --root-dir="$N/kubelet" --hostname-override="$NODE_NAME" --node-ip="$NODE_GATEWAY" \
    --cert-dir="$N/kubelet/pki" -v=1
  launch scheduler --kubeconfig="$W/scheduler.kubeconfig" \
    --authentication-kubeconfig="$W/scheduler.kubeconfig" --authorization-kubeconfig="$W/scheduler.kubeconfig" \
    --leader-elect=false --secure-port=0
  launch proxy --kubeconfig="$W/proxy.kubeconfig" --hostname-override="$NODE_NAME" \
    --proxy-mode=iptables --cluster-cidr="$NODE_POD_CIDR" \
    --metrics-bind-address="127.0.0.1:$PROXY_METRICS_PORT" --healthz-bind-address="127.0.0.1:$PROXY_HEALTHZ_PORT" \
    --conntrack-max-per-core=0
  kc() { "$BIN/kubectl" --kubeconfig "$W/kubeconfig" "$@"; }
  node_ready() {
    [ "$(kc get node "$NODE_NAME" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}')" = True ] &&
      [ -z "$(kc get node "$NODE_NAME" -o 'jsonpath={.spec.taints}')" ]
  }
  wait_for kubelet 90 "Ready node $NODE_NAME without taints" node_ready
  proxy_healthy() { curl -fsS "http://127.0.0.1:$PROXY_HEALTHZ_PORT/healthz"; }
  wait_for proxy 60 "healthy /healthz" proxy_healthy
  # In-cluster clients need Service kubernetes backed by the API server and the default ServiceAccount.
  api_endpoint() { kc get endpointslice -n default -l kubernetes.io/service-name=kubernetes \
    -o 'jsonpath={.items[*].endpoints[*].addresses[*]}' | grep -qx "$NODE_GATEWAY"; }
  wait_for apiserver 60 "EndpointSlice of Service kubernetes at $NODE_GATEWAY" api_endpoint
  default_sa() { kc get serviceaccount default -n default; }
  wait_for controller-manager 60 "default ServiceAccount" default_sa
}

node_iptables_cleanup() { # every KUBE-* chain and the rules that jump to it, in every table
  local ipt t rule chain
  for ipt in iptables ip6tables; do
    command -v "$ipt" >/dev/null 2>&1 || continue
    for t in filter nat mangle raw; do
      "$ipt" -t "$t" -S >/dev/null 2>&1 || continue
      while IFS= read -r rule; do
        # iptables -S quotes comments the way a shell does
        eval "\"\$ipt\" -t \"\$t\" ${rule/#-A/-D}" 2>/dev/null || true
      done < <("$ipt" -t "$t" -S | grep -E '^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) .*-j KUBE-')
      for chain in $("$ipt" -t "$t" -S | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        "$ipt" -t "$t" -F "$chain" 2>/dev/null || true
      done
      for chain in $("$ipt" -t "$t" -S | awk '$1 == "-N" && $2 ~ /^KUBE-/ {print $2}'); do
        "$ipt" -t "$t" -X "$chain" 2>/dev/null || true
      done
    done
  done
}

node_down() {
  local envfile=$W/env kubectl_bin="" i pid p m
  if [ -f "$envfile" ]; then
    kubectl_bin=$(sed -n "s/^BIN='\(.*\)'$/\1/p" "$envfile")/kubectl
  fi
  # 1. No controller recreates pods; the kubelet stops every container it runs (graceful).
  stop controller-manager
  if [ -x "$kubectl_bin" ] && pid_of apiserver >/dev/null && pid_of kubelet >/dev/null; then
    "$kubectl_bin" --kubeconfig "$W/kubeconfig" delete pods --all -A --wait=false --grace-period=5 \
      >/dev/null 2>&1 || true
    for i in $(seq 150); do
      [ -z "$("$kubectl_bin" --kubeconfig "$W/kubeconfig" get pods -A -o name 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
  # 2. The node's processes, then anything the kubelet left behind.
  for p in proxy scheduler kubelet; do stop "$p"; done
  if pid_of containerd >/dev/null; then
    for i in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "$i" >/dev/null 2>&1 || true; done
    sleep 0.5
    for i in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks rm -f "$i" >/dev/null 2>&1 || true; done
  fi
  stop containerd
  # Shims of this containerd (and their containers) outlive it: kill them by their -address.
  for pid in $(pgrep -x containerd-shim-runc-v2 2>/dev/null || true); do
    if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "-address $CONTAINERD_ADDRESS"; then
      pkill -KILL -P "$pid" 2>/dev/null || true
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for p in apiserver etcd; do stop "$p"; done
  # 3. Host state: mounts under DIR (deepest first), iptables chains, bridge, caches, cgroups, sysctls.
  sleep 0.3
  while read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done < <(awk -v w="$N/" 'index($5, w) == 1 {print length($5), $5}' /proc/self/mountinfo | sort -rn | cut -d' ' -f2-)
  node_iptables_cleanup
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  rm -f /var/lib/cni/results/cao-* 2>/dev/null || true
  rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  for m in /var/log/containers/*; do
    [ -L "$m" ] && case $(readlink "$m") in "$N"/*) rm -f "$m" ;; esac
  done
  rmdir /var/log/containers 2>/dev/null || true
  rmdir /run/containerd/runc/k8s.io /run/containerd/runc /run/containerd/s /run/containerd 2>/dev/null || true
  for m in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
    [ -d "$m" ] && find "$m" -depth -type d -exec rmdir {} + 2>/dev/null || true
  done
  if [ -f "$N/sysctls" ]; then
    while read -r p m; do [ -n "$m" ] && echo "$m" >"/proc/sys/$p" 2>/dev/null || true; done <"$N/sysctls"
  fi
  # 4. The lock.
  if [ "$(cat "$NODE_OWNER" 2>/dev/null)" = "$W" ]; then rm -f "$NODE_OWNER"; fi
}
