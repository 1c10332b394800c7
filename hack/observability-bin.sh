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
  [jaeger]="github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION"  # see below
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
  if [ "$t" = jaeger ]; then
    # Jaeger's go.mod has a replace directive (sarama), which `go install module@version` refuses:
    # a throw-away main module requires the jaeger module at the pinned version with the same
    # replace, and builds its cmd/jaeger (the dependency versions are jaeger's own, by MVS).
    mkdir -p "$tmp/mod"
    printf 'module jaegerbuild\n\ngo 1.25\n\nrequire github.com/jaegertracing/jaeger %s\n\nreplace github.com/Shopify/sarama => github.com/Shopify/sarama v1.33.0\n' \
      "$JAEGER_VERSION" >"$tmp/mod/go.mod"
    (cd "$tmp/mod" && GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$tmp/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger) >&2
    rm -rf "$tmp/mod"
  else
    GOBIN="$tmp" go install -trimpath -ldflags "-s -w" "${pkg[$t]}" >&2
  fi
  mv "$tmp/$t" "$out/$t"
  rmdir "$tmp"
  log "built $t in $((SECONDS - t0))s"
done
echo "$out"
