#!/usr/bin/env bash
# Builds the container image offline: a static x86_64-unknown-linux-musl release binary (the Rust
# target and musl-tools are installed if missing) in the FROM-scratch image of ./Dockerfile, built with
# buildah (installed from Debian if missing; no registry is contacted), and saved as a docker-archive
# that `ctr -n k8s.io images import`, `docker load` and `kind load image-archive` all read.
#   usage: hack/image.sh [--docker] [--tag TAG] [--archive FILE]
#     --tag TAG       image reference (default cost-analysis-operator:<Cargo version>)
#     --archive FILE  where to write the archive (default $TARGET/image/cost-analysis-operator.tar)
#     --docker        build with `docker build` instead (same Dockerfile, same context), no archive
# stdout: KEY='value' lines (IMAGE, ARCHIVE, BINARY, SIZE_BYTES); progress on stderr.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
log() { echo "image: $*" >&2; }
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)
tag="cost-analysis-operator:$version" archive="" docker=0
while [ $# -gt 0 ]; do
  case $1 in
    --tag) tag=$2; shift 2 ;;
    --archive) archive=$2; shift 2 ;;
    --docker) docker=1; shift ;;
    *) sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
target_dir=${CARGO_TARGET_DIR:-$root/target}
W=$target_dir/image
archive=${archive:-$W/cost-analysis-operator.tar}
triple=x86_64-unknown-linux-musl

apt_install() { # package...
  log "installing $* (Debian)"
  apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq "$@" >/dev/null; } \
    || { log "cannot install $*"; exit 1; }
}
rustup target list --installed | grep -qx "$triple" || { log "rustup target add $triple"; rustup target add "$triple" >&2; }
command -v musl-gcc >/dev/null 2>&1 || apt_install musl-tools   # ring's C and assembly parts

t0=$SECONDS
log "cargo build --release --target $triple"
cargo build --release --locked --quiet --target "$triple" --bin cost-analysis-operator >&2
bin=$target_dir/$triple/release/cost-analysis-operator
t_build=$SECONDS
if file -b "$bin" 2>/dev/null | grep -q 'dynamically linked'; then log "$bin is not static"; exit 1; fi

rm -rf "$W/context"
mkdir -p "$W/context"
cp "$bin" "$W/context/cost-analysis-operator"

if [ "$docker" = 1 ]; then
  docker build -t "$tag" -f "$root/Dockerfile" "$W/context" >&2
  echo "IMAGE='$tag'"
  echo "BINARY='$bin'"
  exit 0
fi

command -v buildah >/dev/null 2>&1 || apt_install buildah
# Private storage under target/ (vfs: no mounts left behind). `buildah push` as root also writes
# /var/lib/containers/cache/blob-info-cache-v1.boltdb (no flag moves it): removed again below when
# this script created it.
b=(buildah --root "$W/storage" --runroot "$W/run" --storage-driver vfs)
had_containers_dir=0
[ -e /var/lib/containers ] && had_containers_dir=1
log "buildah bud -t $tag (FROM scratch, no registry)"
"${b[@]}" bud --quiet --pull=never --layers=false -t "$tag" -f "$root/Dockerfile" "$W/context" >&2
rm -f "$archive"
mkdir -p "$(dirname "$archive")"
"${b[@]}" push --quiet "$tag" "docker-archive:$archive:$tag" >&2
[ "$had_containers_dir" = 1 ] || rm -rf /var/lib/containers
# Keep the private store small: only the image just built.
"${b[@]}" images -q --filter dangling=true | xargs -r "${b[@]}" rmi >/dev/null 2>&1 || true
size=$(stat -c %s "$archive")
log "$tag: archive $archive, $size bytes (binary $(stat -c %s "$bin") bytes);" \
  "cargo $((t_build - t0))s, image $((SECONDS - t_build))s"
echo "IMAGE='$tag'"
echo "ARCHIVE='$archive'"
echo "BINARY='$bin'"
echo "SIZE_BYTES=$size"
