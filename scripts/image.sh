#!/usr/bin/env bash
# Builds the container image of packaging/kubernetes/daemonset.yaml from
# packaging/kubernetes/Containerfile with buildah (Debian package):
#
#   scripts/image.sh [--arch x86_64|aarch64]      (make image)
#
# IMAGE  the tag (default registry.example.invalid/ttm:<version>)
# BASE   the Debian image to start from (default
#        docker.io/library/debian:bookworm-slim); BASE=mmdebstrap builds
#        a minimal bookworm from Debian's mirror instead
#        (localhost/ttm-base:bookworm, kept in buildah's storage), for
#        hosts that reach Debian but no container registry.
# The packages come from scripts/package.sh; the build context holds
# nothing else. Prints the image ID.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

ARCH=$(uname -m)
while [ $# -gt 0 ]; do
  case $1 in
    --arch) ARCH=$2; shift 2 ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "image.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case $ARCH in
  x86_64) DEB_ARCH=amd64 ;;
  aarch64) DEB_ARCH=arm64 ;;
  *) echo "image.sh: no image for architecture $ARCH" >&2; exit 2 ;;
esac

say() { echo "image: $*" >&2; }
die() { echo "image.sh: $*" >&2; exit 1; }
command -v buildah >/dev/null || die "buildah not found; run scripts/deps.sh (as root)"

# vfs and chroot isolation: no overlay mounts, no OCI runtime, so this
# also works inside a container or a VM without fuse.
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}

BASE=${BASE:-docker.io/library/debian:bookworm-slim}
if [ "$BASE" = mmdebstrap ]; then
  BASE=localhost/ttm-base:bookworm
  if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    command -v mmdebstrap >/dev/null || die "mmdebstrap not found; run scripts/deps.sh (as root)"
    say "building $BASE with mmdebstrap (once per machine)"
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    mmdebstrap --quiet --variant=minbase --architectures="$DEB_ARCH" --format=tar \
      bookworm "$tmp/rootfs.tar"
    c=$(buildah from --arch "$DEB_ARCH" scratch)
    buildah add "$c" "$tmp/rootfs.tar" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
    buildah commit --quiet "$c" "$BASE" >/dev/null
    buildah rm "$c" >/dev/null
  fi
fi

mapfile -t built < <(scripts/package.sh --arch "$ARCH")
context=$(mktemp -d)
trap 'rm -rf "$context" ${tmp:+"$tmp"}' EXIT
for f in "${built[@]}"; do
  case ${f##*/} in
    ttm_*_"$DEB_ARCH".deb | libttm1_*_"$DEB_ARCH".deb) cp "$f" "$context/" ;;
  esac
done
[ "$(find "$context" -name '*.deb' | wc -l)" = 2 ] || die "package.sh built no ttm and libttm1 .deb"

VERSION=$(dpkg-deb -f "$context"/ttm_*.deb Version)
IMAGE=${IMAGE:-registry.example.invalid/ttm:${VERSION%-*}}
say "building $IMAGE from $BASE"
buildah build --quiet --arch "$DEB_ARCH" --build-arg BASE="$BASE" \
  -f packaging/kubernetes/Containerfile -t "$IMAGE" "$context" >&2
buildah inspect --type image --format '{{.FromImageID}}' "$IMAGE"
