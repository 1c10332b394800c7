#!/usr/bin/env bash
# Builds a tiny task image offline for the task runner's in-cluster test and demo: the static
# busybox of Debian's busybox-static package (downloaded with apt, unpacked, never installed) with
# applet links in an empty image (FROM scratch, user 65532), built with buildah (no registry is
# contacted) and saved as a docker-archive for `ctr -n k8s.io images import`.
#   usage: hack/task-image.sh [--tag TAG] [--archive FILE]
#     --tag TAG       image reference (default cao-task:1)
#     --archive FILE  where to write the archive (default $TARGET/task-image/cao-task.tar)
# stdout: KEY='value' lines (IMAGE, ARCHIVE); progress on stderr.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { echo "task-image: $*" >&2; }
tag=cao-task:1 archive=""
while [ $# -gt 0 ]; do
  case $1 in
    --tag) tag=$2; shift 2 ;;
    --archive) archive=$2; shift 2 ;;
    *) sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
  esac
done
W=${CARGO_TARGET_DIR:-$root/target}/task-image
archive=${archive:-$W/cao-task.tar}
mkdir -p "$W"
command -v buildah >/dev/null 2>&1 || { apt-get install -y -qq buildah >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq buildah >/dev/null; }; }
if [ ! -x "$W/deb/bin/busybox" ]; then
  log "apt-get download busybox-static (Debian)"
  rm -rf "$W/deb" "$W"/busybox-static_*.deb
  (cd "$W" && { apt-get download busybox-static >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get download busybox-static >/dev/null; }; })
  dpkg-deb -x "$W"/busybox-static_*.deb "$W/deb"
fi
file -b "$W/deb/bin/busybox" | grep -q 'statically linked' || { log "busybox is not static"; exit 1; }
rm -rf "$W/context"
mkdir -p "$W/context/bin"
cp "$W/deb/bin/busybox" "$W/context/bin/busybox"
for applet in sh echo sleep cat env true false date wget printf test; do
  ln -s busybox "$W/context/bin/$applet"
done
cat >"$W/context/Containerfile" <<'CF'
FROM scratch
COPY bin /bin
ENV PATH=/bin
USER 65532:65532
ENTRYPOINT ["/bin/sh"]
CF
b=(buildah --root "$W/storage" --runroot "$W/run" --storage-driver vfs)
had_containers_dir=0
[ -e /var/lib/containers ] && had_containers_dir=1
log "buildah bud -t $tag (FROM scratch, no registry)"
"${b[@]}" bud --quiet --pull=never --layers=false -t "$tag" -f "$W/context/Containerfile" "$W/context" >&2
rm -f "$archive"
"${b[@]}" push --quiet "$tag" "docker-archive:$archive:$tag" >&2
[ "$had_containers_dir" = 1 ] || rm -rf /var/lib/containers
"${b[@]}" images -q --filter dangling=true | xargs -r "${b[@]}" rmi >/dev/null 2>&1 || true
echo "IMAGE='$tag'"
echo "ARCHIVE='$archive'"
