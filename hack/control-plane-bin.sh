#!/usr/bin/env bash
# Builds (once) and prints the directory holding kube-apiserver, kube-controller-manager, kubectl,
# etcd and helm, compiled from their published Go modules (tools/*/go.mod). The result is cached
# outside the checkout, keyed by tools/versions.env, the wrapper modules and this script, so a fresh
# clone on the same machine reuses it and a version bump rebuilds. Only the directory goes to stdout;
# progress goes to stderr.
# The node binaries (kubelet, kube-scheduler, kube-proxy; same module, same cache directory) are
# built only when asked for with --node, so a machine that never starts a node never builds them.
#   usage: hack/control-plane-bin.sh          build if needed, print the bin directory
#          hack/control-plane-bin.sh --node   the same, plus the node binaries
#          hack/control-plane-bin.sh sync     after editing tools/versions.env: update tools/*/go.mod
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../tools/versions.env
. "$root/tools/versions.env"
K8S=$K8S_VERSION ETCD=$ETCD_VERSION HELM=$HELM_VERSION
staging=v0.${K8S#v1.}                # k8s.io/kubernetes v1.36.3 <-> staging modules v0.36.3
minor=${K8S#v1.}; minor=${minor%%.*}
helm_major=${HELM%%.*}               # v3 -> helm.sh/helm/v3
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
log() { echo "control-plane-bin: $*" >&2; }

if [ "${1:-}" = sync ]; then
  (
    cd "$root/tools/k8s"
    for m in $(go mod edit -json | python3 -c 'import json,sys; print(" ".join(r["Old"]["Path"] for r in json.load(sys.stdin).get("Replace") or []))'); do
      go mod edit -replace="$m=$m@$staging"
    done
    go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$K8S" "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S" \
      "k8s.io/kubernetes/cmd/kubectl@$K8S" "k8s.io/kubernetes/cmd/kubelet@$K8S" \
      "k8s.io/kubernetes/cmd/kube-scheduler@$K8S" "k8s.io/kubernetes/cmd/kube-proxy@$K8S"
  ) >&2
  (cd "$root/tools/etcd" && go get -tool "go.etcd.io/etcd/server/v3@$ETCD") >&2
  (cd "$root/tools/helm" && go get -tool "helm.sh/helm/$helm_major/cmd/helm@$HELM") >&2
  log "tools/*/go.mod now match tools/versions.env; the first go build reports any staging module missing from the replace list"
  exit 0
fi

# Refuse to build something other than what versions.env says.
need() { # dir module version
  grep -Eq "^[[:space:]]*$2 $3( |$)" "$root/tools/$1/go.mod" || {
    log "tools/$1/go.mod does not require $2 $3 (tools/versions.env); run: hack/control-plane-bin.sh sync"; exit 1; }
}
need k8s k8s.io/kubernetes "$K8S"
need etcd go.etcd.io/etcd/server/v3 "$ETCD"
need helm "helm.sh/helm/$helm_major" "$HELM"
if grep -E '^[[:space:]]*k8s\.io/[a-z-]+ => ' "$root/tools/k8s/go.mod" | grep -vq " $staging\$"; then
  log "a replace in tools/k8s/go.mod is not at $staging; run: hack/control-plane-bin.sh sync"; exit 1
fi

bins=(etcd helm kubectl kube-apiserver kube-controller-manager)
node=0
if [ "${1:-}" = --node ]; then node=1; bins+=(kubelet kube-scheduler kube-proxy); fi
key=$(cat "$root/tools/versions.env" "$root"/tools/*/go.mod "$root"/tools/*/go.sum "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
cache=${COST_ANALYSIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cost-analysis-operator}
out="$cache/bin-$key"
complete() { for b in "${bins[@]}"; do [ -x "$out/$b" ] || return 1; done; }
if complete; then echo "$out"; exit 0; fi

mkdir -p "$cache"
# One build at a time per machine (parallel test binaries may all ask at once).
exec 9>"$cache/.lock"
flock 9
if complete; then echo "$out"; exit 0; fi
mkdir -p "$out.tmp"
ldk8s="-s -w \
 -X k8s.io/component-base/version.gitVersion=$K8S \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.gitCommit=unknown \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z \
 -X k8s.io/client-go/pkg/version.gitVersion=$K8S \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
build() { # dir out pkg ldflags
  [ -x "$out/$2" ] || [ -x "$out.tmp/$2" ] && return 0
  log "building $2 (first use on this machine; cached afterwards in $out)"
  local t0=$SECONDS
  (cd "$root/tools/$1" && go build -trimpath -ldflags "$4" -o "$out.tmp/$2" "$3") >&2
  log "built $2 in $((SECONDS - t0))s"
}
build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"
build helm helm "helm.sh/helm/$helm_major/cmd/helm" "-s -w -X helm.sh/helm/$helm_major/internal/version.version=$HELM"
build k8s kubectl k8s.io/kubernetes/cmd/kubectl "$ldk8s"
build k8s kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldk8s"
build k8s kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$ldk8s"
if [ "$node" = 1 ]; then
  build k8s kubelet k8s.io/kubernetes/cmd/kubelet "$ldk8s"
  build k8s kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$ldk8s"
  build k8s kube-proxy k8s.io/kubernetes/cmd/kube-proxy "$ldk8s"
fi
if [ -d "$out" ]; then
  # The control-plane set is already there: the node binaries join it (no other build touches it).
  for b in "${bins[@]}"; do [ -x "$out/$b" ] || mv "$out.tmp/$b" "$out/$b"; done
  rm -rf "$out.tmp"
else
  mv "$out.tmp" "$out"
fi
echo "$out"
