#!/usr/bin/env bash
# Builds (once) and prints the directory holding promtool, prometheus and jaeger, compiled from
# their published Go modules with `go install module/cmd/x@version` (versions in
# tools/versions.env). The result is cached outside the checkout, keyed by the versions and this
# script, like hack/control-plane-bin.sh. Only the directory goes to stdout; progress to stderr.
#   usage: hack/observability-bin.sh [tool...]   (default: every tool)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=../tools/versions.env
. "$root/tools/versions.env"
export GOTOOLCHAIN=local GOFLAGS= CGO_ENABLED=0
log() { echo "observability-bin: $*" >&2; }

declare -A pkg=(
  [promtool]="github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"
  [prometheus]="github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
  [jaeger]="github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION"
)
tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=(promtool prometheus jaeger)
key=$(grep -E '^(PROMETHEUS|JAEGER)_VERSION=' "$root/tools/versions.env" | cat - "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
cache=${COST_ANALYSIS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cost-analysis-operator}
out="$cache/obs-$key"
complete() { for t in "${tools[@]}"; do [ -x "$out/$t" ] || return 1; done; }
if complete; then echo "$out"; exit 0; fi
mkdir -p "$cache" "$out"
exec 9>"$cache/.obs-lock"
flock 9
for t in "${tools[@]}"; do
  [ -x "$out/$t" ] && continue
  [ -n "${pkg[$t]:-}" ] || { log "unknown tool $t"; exit 1; }
  log "building $t from ${pkg[$t]} (first use on this machine; cached afterwards in $out)"
  t0=$SECONDS
  tmp=$(mktemp -d "$out/.build-XXXXXX")
  GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "${pkg[$t]}" >&2
  mv "$tmp/$t" "$out/$t"
  rmdir "$tmp"
  log "built $t in $((SECONDS - t0))s"
done
echo "$out"
