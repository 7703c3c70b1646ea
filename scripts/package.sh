#!/usr/bin/env bash
# Builds the ttm .deb and .rpm packages into <target>/packages/:
#   ttm_<version>-1_<debarch>.deb   ttm-<version>-1.<arch>.rpm
#
#   scripts/package.sh [--arch x86_64|aarch64] [--out DIR]
#
# <target> is $CARGO_TARGET_DIR, or target/. The binaries are a release
# build linked against glibc 2.17 (cargo-zigbuild and zig, installed from
# PyPI into <target>/pkgtools on first use), so libttm.so.1 and ttmctl
# load on any glibc from 2.17 on; the build fails if either needs a newer
# symbol. The same cargo target dir is reused between runs. Packaging
# sources: packaging/ (see docs/packaging.md). Needs dpkg-deb, rpmbuild
# (Debian package rpm), python3-venv, binutils: scripts/deps.sh installs them.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

ARCH=$(uname -m)
OUT=""
while [ $# -gt 0 ]; do
  case $1 in
    --arch) ARCH=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "package.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

# Pinned: the pair this was checked with.
ZIGLANG_VERSION=0.15.2
CARGO_ZIGBUILD_VERSION=0.24.1
GLIBC_BASELINE=2.17

case $ARCH in
  x86_64) DEB_ARCH=amd64 ;;
  aarch64) DEB_ARCH=arm64 ;;
  *) echo "package.sh: no packaging for architecture $ARCH" >&2; exit 2 ;;
esac
TRIPLE=$ARCH-unknown-linux-gnu
MULTIARCH=$ARCH-linux-gnu

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET_DIR in /*) ;; *) TARGET_DIR=$ROOT/$TARGET_DIR ;; esac
export CARGO_TARGET_DIR=$TARGET_DIR
OUT=${OUT:-$TARGET_DIR/packages}
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac

say() { echo "package: $*" >&2; }
die() { echo "package.sh: $*" >&2; exit 1; }

for tool in dpkg-deb rpmbuild gzip python3; do
  command -v "$tool" >/dev/null || die "$tool not found; run scripts/deps.sh (as root)"
done
# LLVM's binutils read and strip every architecture (the host's GNU ones
# only their own); llvm comes with clang, which the build needs anyway.
OBJDUMP=$(command -v llvm-objdump || command -v objdump) || die "no objdump"
STRIP=$(command -v llvm-strip || command -v strip) || die "no strip"
if [ "$ARCH" != "$(uname -m)" ]; then
  rustup target list --installed 2>/dev/null | grep -qx "$TRIPLE" \
    || die "the Rust standard library for $TRIPLE is not installed: rustup target add $TRIPLE"
  # The eBPF objects are built with clang against the target's kernel
  # headers; the cross package puts them outside the multiarch path.
  cross_inc=/usr/$MULTIARCH/include
  [ -d "$cross_inc/asm" ] || die "no $cross_inc/asm: apt-get install linux-libc-dev-$DEB_ARCH-cross"
  export C_INCLUDE_PATH=$cross_inc${C_INCLUDE_PATH:+:$C_INCLUDE_PATH}
fi

# --- build tools: zig and cargo-zigbuild, from PyPI, once per target dir
TOOLS=$TARGET_DIR/pkgtools
STAMP=$TOOLS/.ziglang-$ZIGLANG_VERSION-zigbuild-$CARGO_ZIGBUILD_VERSION
if [ ! -e "$STAMP" ]; then
  say "installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $CARGO_ZIGBUILD_VERSION from PyPI into $TOOLS"
  rm -rf "$TOOLS"
  /usr/bin/python3 -m venv "$TOOLS/venv" || python3 -m venv "$TOOLS/venv" \
    || die "python3 -m venv failed; install python3-venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
    "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
  touch "$STAMP"
fi
# cargo-zigbuild runs `python3 -m ziglang` from PATH when there is no zig.
export PATH=$TOOLS/venv/bin:$PATH

# --- build
VERSION=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "ttm"))')
RELEASE=1
say "building ttm $VERSION for $TRIPLE against glibc $GLIBC_BASELINE (release)"
cargo zigbuild --quiet --release --target "$TRIPLE.$GLIBC_BASELINE" -p ttm -p ttmctl
BIN=$TARGET_DIR/$TRIPLE/release
[ -f "$BIN/libttm.so" ] && [ -f "$BIN/ttmctl" ] || die "build left no $BIN/libttm.so or ttmctl"

# Newest GLIBC_x.y version node an ELF file needs, and a check against the
# baseline: the package's Depends (libc6 >= 2.17) rests on it.
newest_glibc() {
  "$OBJDUMP" -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1
}
for f in "$BIN/libttm.so" "$BIN/ttmctl"; do
  v=$(newest_glibc "$f")
  [ "$(printf '%s\n%s\n' "$v" "$GLIBC_BASELINE" | sort -V | tail -n 1)" = "$GLIBC_BASELINE" ] \
    || die "$f needs GLIBC_$v, newer than the baseline $GLIBC_BASELINE"
done

# --- staging: one file tree per package format
EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
WORK=$OUT/.work-$ARCH
rm -rf "$WORK"
mkdir -p "$WORK" "$OUT"

# stage DEST LIBDIR UNITDIR DOCDIR LIBMODE: every installed file under DEST.
stage() {
  local dest=$1 libdir=$2 unitdir=$3 docdir=$4 libmode=$5
  install -D -m 0755 "$BIN/ttmctl" "$dest/usr/sbin/ttmctl"
  install -D -m "$libmode" "$BIN/libttm.so" "$dest$libdir/libttm.so.1"
  # Packages strip their binaries; the dynamic symbol table stays.
  "$STRIP" --strip-unneeded --remove-section=.comment \
    "$dest/usr/sbin/ttmctl" "$dest$libdir/libttm.so.1"
  ln -s libttm.so.1 "$dest$libdir/libttm.so"
  install -D -m 0644 include/ttm.h "$dest/usr/include/ttm.h"
  mkdir -p "$dest$libdir/pkgconfig"
  # ${prefix} is pkg-config's, not the shell's.
  # shellcheck disable=SC2016
  sed -e 's|@PREFIX@|/usr|' -e "s|@LIBDIR@|$libdir|" \
    -e 's|@INCLUDEDIR@|${prefix}/include|' -e "s|@VERSION@|$VERSION|" \
    packaging/ttm.pc.in | grep -v '^#' >"$dest$libdir/pkgconfig/ttm.pc"
  install -D -m 0755 packaging/ttm-service "$dest/usr/libexec/ttm/ttm-service"
  for unit in ttm.service ttm-check.service ttm-check.timer; do
    install -D -m 0644 "packaging/systemd/$unit" "$dest$unitdir/$unit"
  done
  install -D -m 0644 packaging/ttm.conf "$dest/etc/ttm/ttm.conf"
  for page in packaging/man/ttmctl.8 packaging/man/libttm.7; do
    local sec=${page##*.}
    install -D -m 0644 "$page" "$dest/usr/share/man/man$sec/${page##*/}"
    gzip -9n "$dest/usr/share/man/man$sec/${page##*/}"
  done
  install -D -m 0644 README.md "$dest$docdir/README.md"
  install -D -m 0644 packaging/copyright "$dest$docdir/copyright"
  mkdir -p "$dest$docdir/examples"
  sed -e "s|@LIBDIR@|$libdir|g" packaging/systemd/nginx-preload.conf.in \
    >"$dest$docdir/examples/nginx-preload.conf"
  install -m 0644 examples/nginx/nginx.conf "$dest$docdir/examples/nginx.conf"
  install -m 0644 examples/c/server.c "$dest$docdir/examples/server.c"
  chmod 0644 "$dest$docdir/examples/"*
}

clamp_mtimes() { find "$1" -exec touch -h -d "@$EPOCH" {} +; }

# --- .deb (dpkg-deb)
DEB_ROOT=$WORK/deb
# Debian: shared libraries 0644, units in /lib/systemd/system (bookworm).
stage "$DEB_ROOT" "/usr/lib/$MULTIARCH" /lib/systemd/system /usr/share/doc/ttm 0644
mkdir -p "$DEB_ROOT/DEBIAN"
for s in postinst prerm postrm; do
  install -m 0755 "packaging/deb/$s" "$DEB_ROOT/DEBIAN/$s"
done
install -m 0644 packaging/deb/triggers "$DEB_ROOT/DEBIAN/triggers"
echo /etc/ttm/ttm.conf >"$DEB_ROOT/DEBIAN/conffiles"
INSTALLED_SIZE=$(du -sk --exclude=DEBIAN "$DEB_ROOT" | cut -f1)
sed -e "s|@VERSION@|$VERSION-$RELEASE|" -e "s|@ARCH@|$DEB_ARCH|" \
  -e "s|@INSTALLED_SIZE@|$INSTALLED_SIZE|" packaging/deb/control.in >"$DEB_ROOT/DEBIAN/control"
(cd "$DEB_ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
  | xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$DEB_ROOT/DEBIAN/md5sums" "$DEB_ROOT/DEBIAN/control" "$DEB_ROOT/DEBIAN/conffiles"
clamp_mtimes "$DEB_ROOT"
DEB=$OUT/ttm_$VERSION-${RELEASE}_$DEB_ARCH.deb
SOURCE_DATE_EPOCH=$EPOCH dpkg-deb --root-owner-group -Zxz --build "$DEB_ROOT" "$DEB" >/dev/null
say "$DEB"

# --- .rpm (rpmbuild, from packaging/rpm/ttm.spec)
RPM_ROOT=$WORK/rpm-stage
# RPM: shared libraries 0755 (rpm reads Provides only from executable ELF files).
stage "$RPM_ROOT" /usr/lib64 /usr/lib/systemd/system /usr/share/doc/ttm 0755
clamp_mtimes "$RPM_ROOT"
rpmbuild -bb --quiet \
  --target "$ARCH-linux" \
  --define "_topdir $WORK/rpmbuild" \
  --define "_rpmdir $WORK/rpms" \
  --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
  --define "ttm_version $VERSION" \
  --define "ttm_release $RELEASE" \
  --define "ttm_stage $RPM_ROOT" \
  --define "_libdir /usr/lib64" \
  --define "_unitdir /usr/lib/systemd/system" \
  --define "use_source_date_epoch_as_buildtime 1" \
  --define "clamp_mtime_to_source_date_epoch 1" \
  --define "_buildhost ttm-build" \
  packaging/rpm/ttm.spec
RPM=$OUT/ttm-$VERSION-$RELEASE.$ARCH.rpm
mv "$WORK/rpms/ttm-$VERSION-$RELEASE.$ARCH.rpm" "$RPM"
say "$RPM"
rm -rf "$WORK"
printf '%s\n%s\n' "$DEB" "$RPM"
