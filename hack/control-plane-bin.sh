#!/usr/bin/env bash
# Builds (once) and prints the directory holding kube-apiserver, kubectl, etcd and helm, compiled from
# their published Go modules (tools/*/go.mod). The result is cached outside the checkout, keyed by the
# wrapper modules, so a fresh clone on the same machine reuses it and a version bump rebuilds.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K8S=v1.36.3
ETCD=v3.6.8
HELM=v3.22.0
key=$(cat "$root"/tools/*/go.mod "$root"/tools/*/go.sum "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
cache=${COST_ANALYSIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cost-analysis-operator}
out="$cache/bin-$key"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/kubectl" ] && [ -x "$out/etcd" ] && [ -x "$out/helm" ]; then
  echo "$out"; exit 0
fi
mkdir -p "$out.tmp"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
log() { echo "control-plane-bin: $*" >&2; }
minor=${K8S#v1.}; minor=${minor%%.*}
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
  [ -x "$out.tmp/$2" ] && return 0
  log "building $2 (first use on this machine; cached afterwards in $out)"
  (cd "$root/tools/$1" && go build -trimpath -ldflags "$4" -o "$out.tmp/$2" "$3") >&2
}
build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"
build helm helm helm.sh/helm/v3/cmd/helm "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM"
build k8s kubectl k8s.io/kubernetes/cmd/kubectl "$ldk8s"
build k8s kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$ldk8s"
rm -rf "$out" && mv "$out.tmp" "$out"
: "$ETCD"
echo "$out"
