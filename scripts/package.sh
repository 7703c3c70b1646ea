#!/usr/bin/env bash
# Builds the ttm packages into <target>/packages/, split the way libbpf
# and nginx are packaged:
#   .deb: ttm_<v>-<r>_<arch>.deb (ttmctl, ttm.service, man pages,
#         completions), libttm1_<v>-<r>_<arch>.deb (libttm.so.1; shlibs,
#         symbols), libttm-dev_<v>-<r>_<arch>.deb (ttm.h, ttm.pc, libttm.so)
#   .rpm: ttm, ttm-libs, ttm-devel (<name>-<v>-<r>.<arch>.rpm)
#
#   scripts/package.sh [--arch x86_64|aarch64] [--out DIR]
#
# Prints the path of every package built, one per line. <target> is
# $CARGO_TARGET_DIR, or target/. The binaries are a release build linked
# against glibc 2.17 (cargo-zigbuild and zig, installed from PyPI into
# <target>/pkgtools on first use), so libttm.so.1 and ttmctl load on any
# glibc from 2.17 on; the build fails if either needs a newer symbol.
# aarch64 is cross-built with the same zig, by Debian's rustc-web and its
# arm64 standard library (scripts/deps/packaging.list installs both):
# rustup's own targets cannot be downloaded everywhere this runs.
# The third-party notices come from cargo-about (pinned below; installed
# with `cargo install --locked` into $TTM_TOOLS, default
# ~/.cache/ttm-tools, once per machine). Packaging sources: packaging/
# (docs/packaging.md). Needs dpkg-deb, rpmbuild (Debian package rpm),
# python3-venv, binutils: scripts/deps.sh installs them.
#
# TTM_MAINTAINER sets the Maintainer/Packager (default: the placeholder
# below); the homepage is Cargo.toml's `repository`.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

ARCH=$(uname -m)
OUT=""
while [ $# -gt 0 ]; do
  case $1 in
    --arch) ARCH=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    -h | --help) sed -n '2,28p' "$0"; exit 0 ;;
    *) echo "package.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

# Pinned: the versions this was checked with.
ZIGLANG_VERSION=0.15.2
CARGO_ZIGBUILD_VERSION=0.24.1
CARGO_ABOUT_VERSION=0.9.3
GLIBC_BASELINE=2.17
# The Debian revision: 2 since the one package became three.
RELEASE=2
MAINTAINER=${TTM_MAINTAINER:-ttm maintainers <ttm@example.invalid>}

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

for tool in dpkg-deb rpmbuild gzip python3 cargo; do
  command -v "$tool" >/dev/null || die "$tool not found; run scripts/deps.sh (as root)"
done
# LLVM's binutils read and strip every architecture (the host's GNU ones
# only their own); llvm comes with clang, which the build needs anyway.
OBJDUMP=$(command -v llvm-objdump || command -v objdump) || die "no objdump"
STRIP=$(command -v llvm-strip || command -v strip) || die "no strip"
NM=$(command -v llvm-nm || command -v nm) || die "no nm"

# --- the Rust compiler for the target
# rustup's toolchain when it has the target's standard library; else
# Debian's rustc-web with libstd-rust-web-dev:<arch> (same version).
CROSS_RUSTC=""
if ! rustup target list --installed 2>/dev/null | grep -qx "$TRIPLE"; then
  [ -x /usr/bin/rustc ] && [ -d "/usr/lib/rustlib/$TRIPLE/lib" ] \
    || die "no Rust standard library for $TRIPLE: install rustc-web and libstd-rust-web-dev:$DEB_ARCH (scripts/deps.sh does) or rustup target add $TRIPLE"
  CROSS_RUSTC=/usr/bin/rustc
fi

# --- build tools: zig and cargo-zigbuild from PyPI, once per target dir
TOOLS=$TARGET_DIR/pkgtools
STAMP=$TOOLS/.ziglang-$ZIGLANG_VERSION-zigbuild-$CARGO_ZIGBUILD_VERSION
if [ ! -e "$STAMP" ]; then
  say "installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $CARGO_ZIGBUILD_VERSION from PyPI into $TOOLS"
  rm -rf "$TOOLS/venv" "$TOOLS"/.ziglang-*
  /usr/bin/python3 -m venv "$TOOLS/venv" || python3 -m venv "$TOOLS/venv" \
    || die "python3 -m venv failed; install python3-venv"
  "$TOOLS/venv/bin/pip" install --quiet --disable-pip-version-check \
    "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
  touch "$STAMP"
fi
# cargo-zigbuild runs `python3 -m ziglang` from PATH when there is no zig.
export PATH=$TOOLS/venv/bin:$PATH

# --- cargo-about, once per machine: it compiles for a few minutes, and
# CI runs in a fresh clone, so it lives outside the target dir.
ABOUT_ROOT=${TTM_TOOLS:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/ttm-tools}/cargo-about-$CARGO_ABOUT_VERSION
CARGO_ABOUT=$ABOUT_ROOT/bin/cargo-about
if [ ! -x "$CARGO_ABOUT" ]; then
  say "building cargo-about $CARGO_ABOUT_VERSION into $ABOUT_ROOT (once per machine)"
  cargo install --quiet --locked "cargo-about@$CARGO_ABOUT_VERSION" --features cli \
    --root "$ABOUT_ROOT" --target-dir "$ABOUT_ROOT/build"
  rm -rf "$ABOUT_ROOT/build"
fi

# --- build
meta() {
  cargo metadata --format-version 1 --no-deps | python3 -c "import json,sys
p = next(p for p in json.load(sys.stdin)['packages'] if p['name'] == 'ttm')
print(p['$1'] or '')"
}
VERSION=$(meta version)
# The workspace's `repository` (the packages do not inherit it).
HOMEPAGE=$(python3 -c 'import tomllib; print(tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["repository"])')
FULL_VERSION=$VERSION-$RELEASE
say "building ttm $VERSION for $TRIPLE against glibc $GLIBC_BASELINE (release)"
BUILD_LOG=$(mktemp)
trap 'rm -f "$BUILD_LOG"' EXIT
# JSON messages name ttmctl's OUT_DIR, where build.rs left the man pages
# and completions.
RUSTC=${CROSS_RUSTC:-${RUSTC:-rustc}} cargo zigbuild --quiet --release --locked \
  --message-format=json --target "$TRIPLE.$GLIBC_BASELINE" -p ttm -p ttmctl >"$BUILD_LOG"
BIN=$TARGET_DIR/$TRIPLE/release
[ -f "$BIN/libttm.so" ] && [ -f "$BIN/ttmctl" ] || die "build left no $BIN/libttm.so or ttmctl"
GEN=$(python3 -c 'import json,sys
for line in open(sys.argv[1]):
    m = json.loads(line)
    # package_id: path+file:///.../ttmctl#0.1.0
    if m.get("reason") == "build-script-executed" and m["package_id"].split("#")[0].endswith("/ttmctl"):
        print(m["out_dir"])' "$BUILD_LOG" | tail -n 1)
[ -n "$GEN" ] && [ -f "$GEN/man/ttmctl.8" ] && [ -f "$GEN/completions/ttmctl.bash" ] \
  || die "no man pages and completions from ttmctl's build script (OUT_DIR '$GEN')"

# Newest GLIBC_x.y version node an ELF file needs, and a check against the
# baseline: the packages' Depends (libc6 >= 2.17) rest on it.
newest_glibc() {
  "$OBJDUMP" -T "$1" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n 1
}
for f in "$BIN/libttm.so" "$BIN/ttmctl"; do
  v=$(newest_glibc "$f")
  [ "$(printf '%s\n%s\n' "$v" "$GLIBC_BASELINE" | sort -V | tail -n 1)" = "$GLIBC_BASELINE" ] \
    || die "$f needs GLIBC_$v, newer than the baseline $GLIBC_BASELINE"
done

# The library's exports are its ABI: they must be the symbols file's.
exported=$("$NM" -D --defined-only "$BIN/libttm.so" | awk '{print $3}' | sort)
declared=$(sed -n 's/^ \([^@ ]*\)@Base .*/\1/p' packaging/deb/libttm1/symbols | sort)
if [ "$exported" != "$declared" ]; then
  die "libttm.so exports differ from packaging/deb/libttm1/symbols (add new symbols there with
the version that introduced them, '<name>@Base $VERSION'; a removed one needs a new SONAME):
$(diff <(echo "$declared") <(echo "$exported") | grep '^[<>]')"
fi

# --- generated files shared by the formats
WORK=$OUT/.work-$ARCH
rm -rf "$WORK"
mkdir -p "$WORK/gen" "$OUT"
EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
# Notices of the crates linked into each binary (cargo-about reads the
# crates' own license files from the cargo registry; --offline: nothing
# but crates.io is reachable, and cargo has fetched them all).
cargo fetch --quiet --locked
notices() {
  "$CARGO_ABOUT" generate --offline --locked -c packaging/licenses/about.toml \
    -m "$1" packaging/licenses/third-party-notices.hbs -o "$2" 2>"$WORK/about.log" \
    || die "cargo-about failed: $(cat "$WORK/about.log")"
}
notices ttmctl/Cargo.toml "$WORK/gen/notices-ttmctl.txt"
notices Cargo.toml "$WORK/gen/notices-libttm.txt"
sed -e "s|@MAINTAINER@|$MAINTAINER|" packaging/deb/changelog | gzip -9n >"$WORK/gen/changelog.Debian.gz"

# install_man SRC DEST_DIR: a man page, compressed reproducibly.
install_man() {
  install -D -m 0644 "$1" "$2/${1##*/}"
  gzip -9n "$2/${1##*/}"
}

# Every file of every package, into per-package trees under $1, for a
# package format ("deb" or "rpm"); where a file goes differs between them.
stage() {
  local fmt=$1 top=$2 libdir unitdir zshdir libmode
  local tools=$top/ttm lib=$top/libttm1 dev=$top/libttm-dev
  if [ "$fmt" = deb ]; then
    # Debian: shared libraries 0644, units in /lib/systemd/system (bookworm).
    libdir=/usr/lib/$MULTIARCH unitdir=/lib/systemd/system
    zshdir=/usr/share/zsh/vendor-completions libmode=0644
  else
    # RPM: shared libraries 0755 (rpm reads Provides only from executable ELF files).
    libdir=/usr/lib64 unitdir=/usr/lib/systemd/system
    zshdir=/usr/share/zsh/site-functions libmode=0755
  fi

  # ttmctl and the service
  install -D -m 0755 "$BIN/ttmctl" "$tools/usr/sbin/ttmctl"
  "$STRIP" --strip-unneeded --remove-section=.comment "$tools/usr/sbin/ttmctl"
  install -D -m 0755 packaging/ttm-service "$tools/usr/libexec/ttm/ttm-service"
  for unit in ttm.service ttm-check.service ttm-check.timer; do
    install -D -m 0644 "packaging/systemd/$unit" "$tools$unitdir/$unit"
  done
  install -D -m 0644 packaging/ttm.conf "$tools/etc/ttm/ttm.conf"
  for page in "$GEN"/man/ttmctl*.8; do
    install_man "$page" "$tools/usr/share/man/man8"
  done
  install -D -m 0644 "$GEN/completions/ttmctl.bash" "$tools/usr/share/bash-completion/completions/ttmctl"
  install -D -m 0644 "$GEN/completions/_ttmctl" "$tools$zshdir/_ttmctl"
  install -D -m 0644 "$GEN/completions/ttmctl.fish" "$tools/usr/share/fish/vendor_completions.d/ttmctl.fish"
  install -D -m 0644 README.md "$tools/usr/share/doc/ttm/README.md"
  [ "$fmt" = rpm ] || install -D -m 0644 packaging/deb/ttm/lintian-overrides \
    "$tools/usr/share/lintian/overrides/ttm"
  mkdir -p "$tools/usr/share/doc/ttm/examples"
  sed -e "s|@LIBDIR@|$libdir|g" packaging/systemd/nginx-preload.conf.in \
    >"$tools/usr/share/doc/ttm/examples/nginx-preload.conf"
  install -m 0644 examples/nginx/nginx.conf "$tools/usr/share/doc/ttm/examples/nginx.conf"
  chmod 0644 "$tools/usr/share/doc/ttm/examples/"*

  # the library
  install -D -m "$libmode" "$BIN/libttm.so" "$lib$libdir/libttm.so.1"
  # Packages strip their binaries; the dynamic symbol table stays.
  "$STRIP" --strip-unneeded --remove-section=.comment "$lib$libdir/libttm.so.1"
  install_man packaging/man/libttm.7 "$lib/usr/share/man/man7"
  [ "$fmt" = rpm ] || install -D -m 0644 packaging/deb/libttm1/lintian-overrides \
    "$lib/usr/share/lintian/overrides/libttm1"

  # development files
  mkdir -p "$dev$libdir/pkgconfig"
  ln -s libttm.so.1 "$dev$libdir/libttm.so"
  install -D -m 0644 include/ttm.h "$dev/usr/include/ttm.h"
  # ${prefix} is pkg-config's, not the shell's.
  # shellcheck disable=SC2016
  sed -e 's|@PREFIX@|/usr|' -e "s|@LIBDIR@|$libdir|" \
    -e 's|@INCLUDEDIR@|${prefix}/include|' -e "s|@VERSION@|$VERSION|" \
    packaging/ttm.pc.in | grep -v '^#' >"$dev$libdir/pkgconfig/ttm.pc"
  chmod 0644 "$dev$libdir/pkgconfig/ttm.pc"
  install -D -m 0644 examples/c/server.c "$dev/usr/share/doc/$( [ "$fmt" = deb ] && echo libttm-dev || echo ttm-devel)/examples/server.c"

  # Licenses and notices: Debian's copyright file in each doc dir; RPM's
  # license dir per package.
  local pkg tree notice
  for pkg in ttm libttm1 libttm-dev; do
    tree=$top/$pkg
    case $pkg in
      ttm) notice=$WORK/gen/notices-ttmctl.txt ;;
      libttm1) notice=$WORK/gen/notices-libttm.txt ;;
      *) notice="" ;;
    esac
    if [ "$fmt" = deb ]; then
      local doc=$tree/usr/share/doc/$pkg
      install -D -m 0644 "$WORK/gen/changelog.Debian.gz" "$doc/changelog.Debian.gz"
      sed -e "s|@MAINTAINER@|$MAINTAINER|" -e "s|@HOMEPAGE@|$HOMEPAGE|" \
        -e "s|@PACKAGE@|$pkg|" packaging/copyright >"$doc/copyright"
      chmod 0644 "$doc/copyright"
      [ -z "$notice" ] || install -m 0644 "$notice" "$doc/third-party-notices.txt"
    else
      local rpmname
      case $pkg in ttm) rpmname=ttm ;; libttm1) rpmname=ttm-libs ;; *) rpmname=ttm-devel ;; esac
      local lic=$tree/usr/share/licenses/$rpmname
      install -D -m 0644 LICENSE-MIT "$lic/LICENSE-MIT"
      install -D -m 0644 LICENSE-APACHE "$lic/LICENSE-APACHE"
      [ -z "$notice" ] || install -m 0644 "$notice" "$lic/third-party-notices.txt"
    fi
  done
}

clamp_mtimes() { find "$1" -exec touch -h -d "@$EPOCH" {} +; }

BUILT=()

# --- .deb (dpkg-deb), one per package
DEB_TOP=$WORK/deb
stage deb "$DEB_TOP"
for pkg in ttm libttm1 libttm-dev; do
  root=$DEB_TOP/$pkg
  mkdir -p "$root/DEBIAN"
  case $pkg in
    ttm)
      for s in postinst prerm postrm; do
        install -m 0755 "packaging/deb/ttm/$s" "$root/DEBIAN/$s"
      done
      install -m 0644 packaging/deb/ttm/conffiles "$root/DEBIAN/conffiles"
      ;;
    libttm1)
      install -m 0644 packaging/deb/libttm1/triggers "$root/DEBIAN/triggers"
      sed "s|@UPSTREAM_VERSION@|$VERSION|" packaging/deb/libttm1/shlibs.in >"$root/DEBIAN/shlibs"
      grep -v '^#' packaging/deb/libttm1/symbols >"$root/DEBIAN/symbols"
      chmod 0644 "$root/DEBIAN/shlibs" "$root/DEBIAN/symbols"
      ;;
  esac
  installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
  sed -e "s|@VERSION@|$FULL_VERSION|g" -e "s|@ARCH@|$DEB_ARCH|" \
    -e "s|@INSTALLED_SIZE@|$installed_size|" -e "s|@MAINTAINER@|$MAINTAINER|" \
    -e "s|@HOMEPAGE@|$HOMEPAGE|" "packaging/deb/$pkg/control.in" >"$root/DEBIAN/control"
  (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z \
    | xargs -0 md5sum >DEBIAN/md5sums)
  chmod 0644 "$root/DEBIAN/md5sums" "$root/DEBIAN/control"
  clamp_mtimes "$root"
  deb=$OUT/${pkg}_${FULL_VERSION}_$DEB_ARCH.deb
  SOURCE_DATE_EPOCH=$EPOCH dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
  BUILT+=("$deb")
done

# --- .rpm (rpmbuild, from packaging/rpm/ttm.spec), one tree for all three
RPM_TOP=$WORK/rpm-stage
stage rpm "$RPM_TOP"
RPM_ROOT=$WORK/rpm-root
mkdir -p "$RPM_ROOT"
for pkg in ttm libttm1 libttm-dev; do
  cp -a "$RPM_TOP/$pkg/." "$RPM_ROOT/"
done
clamp_mtimes "$RPM_ROOT"
# Distributions with systemd have its macros (systemd-rpm-macros);
# Debian's rpm has none, so the spec gets the same ones from packaging/.
systemd_macros=()
if [ -z "$(rpm --eval '%{?systemd_post:1}')" ]; then
  systemd_macros=(--define "ttm_systemd_macros $ROOT/packaging/rpm/macros.systemd")
fi
rpmbuild -bb --quiet "${systemd_macros[@]}" \
  --target "$ARCH-linux" \
  --define "_topdir $WORK/rpmbuild" \
  --define "_rpmdir $WORK/rpms" \
  --define "_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm" \
  --define "ttm_version $VERSION" \
  --define "ttm_release $RELEASE" \
  --define "ttm_stage $RPM_ROOT" \
  --define "ttm_url $HOMEPAGE" \
  --define "packager $MAINTAINER" \
  --define "_libdir /usr/lib64" \
  --define "_unitdir /usr/lib/systemd/system" \
  --define "use_source_date_epoch_as_buildtime 1" \
  --define "clamp_mtime_to_source_date_epoch 1" \
  --define "_buildhost ttm-build" \
  packaging/rpm/ttm.spec
for name in ttm ttm-libs ttm-devel; do
  rpm=$OUT/$name-$FULL_VERSION.$ARCH.rpm
  mv "$WORK/rpms/$name-$FULL_VERSION.$ARCH.rpm" "$rpm"
  BUILT+=("$rpm")
done
rm -rf "$WORK"
for f in "${BUILT[@]}"; do
  say "$f"
done
printf '%s\n' "${BUILT[@]}"
