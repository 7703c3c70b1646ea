#!/usr/bin/env bash
# The kernel matrix (`make test-kernels`): every test that touches the
# kernel, and the demo, on each kernel in KERNELS, then one table of what
# passed where. Root; installs what it needs (scripts/deps.sh, virtme-ng
# from PyPI into a venv, the kernels from Debian's archive).
#
#   KERNELS="host 6.1 5.10:kernel_side,preload_e2e,demo"   (default) each of:
#     host   the running kernel, directly
#     6.1    Debian 12's kernel: the newest linux-image-6.1.0-*-amd64-unsigned
#            (not -cloud-: it lacks the 9p the VM's root filesystem needs),
#            booted by virtme-ng in QEMU with this machine's root filesystem
#            (read-only, over virtiofs; target/ gets a throw-away overlay),
#            TCG only: nested KVM fails on these hosts
#     5.10   Debian 11's kernel (bullseye), booted the same way
#     6.12   Debian 13's kernel (trixie), booted the same way
#     5.15   Ubuntu 22.04's kernel (jammy): the newest
#            linux-image-unsigned-5.15.0-*-generic with its linux-modules
#     6.8    Ubuntu 24.04's kernel (noble), the same way
#     linux-image-...-unsigned   any such Debian package of the host's sources
#   ENTRY:ROW,ROW   that entry with only those rows (overrides TESTS)
#   TESTS="kernel_side demo ..."   a subset (scripts/lib/kernel-suite.sh)
#   TTM_VM_CPUS=2 TTM_VM_MEMORY=3G TTM_VM_TIMEOUT=3000 (seconds per VM)
#
# Everything is built on the host first; the VM runs the built test
# binaries (kernel-suite.sh), never cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/sbin:/sbin

# Debian 11's 5.10, ttm's oldest, runs the rows that load every program
# and exercise what it lacks (the getsockopt fallback, no unprivileged map
# reads, no cgroup.kill), to keep CI's VM time down; `make test-kernels
# KERNELS="5.10"` runs all of them there.
KERNELS=${KERNELS:-host 6.1 5.10:kernel_side,preload_e2e,demo}
CACHE=$PWD/target/kernel-matrix
# virtme-ng's version is pinned: its guest init and options are what this
# script was written against.
VIRTME_NG=virtme-ng==1.42
# virtiofsd is built once per machine (a few minutes) and kept outside the
# work tree; Debian 12 has only QEMU's old C one, which virtme-ng rejects.
VIRTIOFSD=1.14.0
TOOLS=${TTM_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/ttm-tools}/virtiofsd-$VIRTIOFSD

[ "$(id -u)" -eq 0 ] || { echo "test-kernels: run as root (VMs, namespaces, eBPF)" >&2; exit 1; }
say() { printf '\n== test-kernels: %s\n' "$*"; }

scripts/deps.sh

# virtme-ng into a venv of Debian's python3 (not whatever python3 is first
# on PATH: the VM runs it from the same root filesystem).
venv() {
  local v=$CACHE/venv
  if [ ! -x "$v/bin/vng" ] || ! "$v/bin/vng" --version 2>/dev/null | grep -qx "virtme-ng ${VIRTME_NG#*==}"; then
    rm -rf "$v"
    /usr/bin/python3 -m venv "$v"
    "$v/bin/pip" install --quiet --disable-pip-version-check "$VIRTME_NG"
  fi
  echo "$v/bin"
}

# The VM's root over virtiofs: python- and exec-heavy tests run about
# twice as fast as over 9p, virtme-ng's fallback (taken, with a warning, if
# virtiofsd cannot be built).
virtiofsd() {
  if [ ! -x "$TOOLS/bin/virtiofsd" ]; then
    say "building virtiofsd $VIRTIOFSD (once per machine) into $TOOLS" >&2
    cargo install --quiet --locked --root "$TOOLS" "virtiofsd@$VIRTIOFSD" >&2 ||
      { echo "test-kernels: warning: no virtiofsd; the VM's root goes over 9p (slower)" >&2; return 0; }
  fi
  echo "$TOOLS/bin"
}

# Kernels of other releases come from their own suites through a private
# apt state under $CACHE/apt: the host's apt sources and lists are never
# touched. Debian's are signed by debian-archive-keyring, which Debian 12
# ships for every release; Ubuntu's by its 2018 archive key (see
# ubuntu_keyring).
#   entry  release            suite
#   5.10   Debian 11          bullseye (+ bullseye-security)
#   6.1    Debian 12          the host's own sources (bookworm)
#   6.12   Debian 13          trixie (+ trixie-security)
#   5.15   Ubuntu 22.04 LTS   jammy (+ jammy-updates, jammy-security)
#   6.8    Ubuntu 24.04 LTS   noble (+ noble-updates, noble-security)
suite_for() {
  case $1 in
    5.10) echo bullseye ;;
    6.12) echo trixie ;;
    5.15) echo jammy ;;
    6.8) echo noble ;;
    *) echo "" ;;
  esac
}

distro_for() {
  case $1 in
    5.15 | 6.8) echo Ubuntu ;;
    *) echo Debian ;;
  esac
}

# Ubuntu's archive key, for apt to check Ubuntu's suites with. Debian 12
# has no ubuntu-keyring package, and no keyserver is reachable from every
# CI host, so the keyring comes from Ubuntu's own package, pinned by its
# checksum, and only the key whose fingerprint is pinned here (the one
# ubuntu.com publishes for the archive since 2018) is taken from it.
UBUNTU_KEYRING_DEB=pool/main/u/ubuntu-keyring/ubuntu-keyring_2021.03.26_all.deb
UBUNTU_KEYRING_SHA256=0d0e7ed6b112f5d03eabf3c7eb01ebdacf9c57714b279e90495cfc58c8c4520f
UBUNTU_ARCHIVE_KEY=F6ECB3762474EDA9D21B7022871920D1991BC93C
ubuntu_keyring() {
  local d=$CACHE/apt/ubuntu-keyring key=$CACHE/apt/ubuntu-keyring/archive.gpg
  if [ ! -s "$key" ]; then
    command -v gpg >/dev/null || apt-get install -y -qq gpg >&2
    rm -rf "$d"; mkdir -p "$d"
    curl -fsS -o "$d/keyring.deb" "http://archive.ubuntu.com/ubuntu/$UBUNTU_KEYRING_DEB" >&2
    echo "$UBUNTU_KEYRING_SHA256  $d/keyring.deb" | sha256sum -c --quiet >&2 ||
      { echo "test-kernels: $UBUNTU_KEYRING_DEB does not have the pinned checksum" >&2; return 1; }
    dpkg-deb -x "$d/keyring.deb" "$d/x"
    gpg --batch --quiet --no-default-keyring --keyring "$d/x/usr/share/keyrings/ubuntu-archive-keyring.gpg" \
      --export "$UBUNTU_ARCHIVE_KEY" >"$key.new"
    gpg --batch --show-keys --with-colons "$key.new" 2>/dev/null | grep -qx "fpr:::::::::$UBUNTU_ARCHIVE_KEY:" ||
      { echo "test-kernels: no key $UBUNTU_ARCHIVE_KEY in $UBUNTU_KEYRING_DEB" >&2; return 1; }
    mv "$key.new" "$key"
  fi
  echo "$key"
}

# apt options for a suite ("" = the host's own configuration).
apt_opts() {
  local suite=$1 d
  [ -n "$suite" ] || return 0
  d=$CACHE/apt/$suite
  printf '%s\n' -o "Dir::Etc::SourceList=$d/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o "Dir::State::Lists=$d/lists" -o "Dir::Cache=$d/cache" -o APT::Sandbox::User=root
}

# Makes (or refreshes, once a day) the private apt lists of a suite.
apt_suite() {
  local suite=$1 d=$CACHE/apt/$1 keyring
  mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
  case $suite in
    jammy | noble)
      keyring=$(ubuntu_keyring) || return 1
      printf 'deb [arch=amd64 signed-by=%s] http://archive.ubuntu.com/ubuntu %s main\ndeb [arch=amd64 signed-by=%s] http://archive.ubuntu.com/ubuntu %s-updates main\n' \
        "$keyring" "$suite" "$keyring" "$suite" >"$d/sources.list"
      printf 'deb [arch=amd64 signed-by=%s] http://security.ubuntu.com/ubuntu %s-security main\n' \
        "$keyring" "$suite" >>"$d/sources.list"
      ;;
    *)
      keyring=/usr/share/keyrings/debian-archive-keyring.gpg
      [ -f "$keyring" ] || apt-get install -y -qq debian-archive-keyring >&2
      printf 'deb [signed-by=%s] http://deb.debian.org/debian %s main\ndeb [signed-by=%s] http://deb.debian.org/debian-security %s-security main\n' \
        "$keyring" "$suite" "$keyring" "$suite" >"$d/sources.list"
      ;;
  esac
  if [ -z "$(find "$d/lists" -maxdepth 1 -name '*_Packages' -mmin -1440 2>/dev/null)" ]; then
    local opts
    mapfile -t opts < <(apt_opts "$suite")
    apt-get "${opts[@]}" update -qq >&2
  fi
}

# The kernel package for a KERNELS entry: the newest
# linux-image-<entry>.*-amd64-unsigned of its Debian suite, or
# linux-image-unsigned-<entry>.0-*-generic of its Ubuntu ones.
package_for() {
  case $1 in
    5.10 | 6.1 | 6.12 | 5.15 | 6.8)
      local suite pkgs opts re
      suite=$(suite_for "$1")
      re='^linux-image-'"${1//./\\.}"'\.[0-9]+(-[0-9]+|\+deb[0-9]+)-amd64-unsigned$'
      [ "$(distro_for "$1")" = Ubuntu ] && re='^linux-image-unsigned-'"${1//./\\.}"'\.0-[0-9]+-generic$'
      if [ -n "$suite" ]; then apt_suite "$suite" || return 1; fi
      mapfile -t opts < <(apt_opts "$suite")
      pkgs=$(apt-cache "${opts[@]}" search --names-only "$re" | awk '{print $1}')
      if [ -z "$pkgs" ] && [ -z "$suite" ]; then
        apt-get update -qq >&2
        pkgs=$(apt-cache search --names-only "$re" | awk '{print $1}')
      fi
      [ -n "$pkgs" ] || { echo "test-kernels: no kernel package matching $re in ${suite:-the host apt sources}" >&2; return 1; }
      sort -V <<<"$pkgs" | tail -n1
      ;;
    linux-image-*-unsigned) echo "$1" ;;
    *) echo "test-kernels: unknown kernel '$1' (host, 5.10, 6.1, 6.12, 5.15, 6.8 or linux-image-...-unsigned)" >&2; return 1 ;;
  esac
}

# Unpacks a kernel package into $CACHE/<release> with its module index
# (modprobe veth), and prints that directory. Ubuntu ships the modules
# (veth, 9p, virtiofs) in linux-modules-<release>, unpacked beside it.
fetch_kernel() {
  local pkg=$1 suite=$2 release dir opts p pkgs
  release=${pkg#linux-image-}; release=${release#unsigned-}; release=${release%-unsigned}
  dir=$CACHE/$release
  pkgs=("$pkg")
  [[ $pkg == linux-image-unsigned-* ]] && pkgs+=("linux-modules-$release")
  if [ ! -f "$dir/boot/vmlinuz-$release" ] || [ ! -f "$dir/lib/modules/$release/modules.dep" ]; then
    mkdir -p "$CACHE/debs"
    rm -rf "$dir"
    mapfile -t opts < <(apt_opts "$suite")
    for p in "${pkgs[@]}"; do
      rm -f "$CACHE"/debs/"$p"_*.deb
      (cd "$CACHE/debs" && apt-get "${opts[@]}" download -q -o APT::Sandbox::User=root "$p" >&2)
      dpkg-deb -x "$CACHE"/debs/"$p"_*.deb "$dir"
    done
    # Debian 13 ships the modules in /usr/lib/modules (merged /usr, as its
    # own root is): give depmod -b and virtme-ng the /lib view too.
    if [ ! -e "$dir/lib" ] && [ -d "$dir/usr/lib/modules/$release" ]; then
      ln -s usr/lib "$dir/lib"
    fi
    depmod -b "$dir" "$release"
  fi
  echo "$dir"
}

# Builds everything and writes "<test> <binary>" for the suite.
build() {
  say "building on the host"
  cargo build --workspace
  cargo test --workspace --no-run --message-format=json-render-diagnostics |
    /usr/bin/python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["target"]["name"], m["executable"])' >"$CACHE/tests"
}

# run_kernel LABEL: runs the suite there, its output to the terminal and
# to $CACHE/logs/LABEL.log.
# An entry may name its own rows: KERNEL:ROW,ROW (e.g. 5.10:kernel_side,demo).
run_kernel() {
  local k=${1%%:*} rows="" run=$CACHE/run-${1%%:*} log=$CACHE/logs/${1%%:*}.log rc=0
  [[ $1 == *:* ]] && rows=${1#*:}
  rows=${rows//,/ }
  rm -rf "$run"; mkdir -p "$run" "$CACHE/logs"
  cp "$CACHE/tests" "$run/tests"
  # The VM's init clears the environment; the tests need the host's PATH
  # (rustc for the compat matrix) and HOME.
  printf 'export PATH=%q HOME=%q\n' "$PATH" "$HOME" >"$run/env"
  rows=${rows:-${TESTS:-}}
  [ -n "$rows" ] && printf 'export TESTS=%q\n' "$rows" >>"$run/env"
  if [ "$k" = host ]; then
    say "host kernel $(uname -r)"
    local start=$SECONDS
    bash scripts/lib/kernel-suite.sh "$run" 2>&1 | tee "$log" || rc=$?
    echo "test-kernels: $(uname -r) (host): $((SECONDS - start)) s" >>"$CACHE/times"
    echo "ttm-kernels-kernel $(uname -r) (host)" >>"$log"
    return "$rc"
  fi
  local pkg dir release bin fsd
  # (set -e does not reach into a function called with ||.)
  pkg=$(package_for "$k") || return 1
  dir=$(fetch_kernel "$pkg" "$(suite_for "$k")") || return 1
  release=$(basename "$dir")
  bin=$(venv) || return 1
  fsd=$(virtiofsd)
  say "$k: $(distro_for "$k")'s $pkg ($(dpkg-deb -f "$CACHE"/debs/"$pkg"_*.deb Version)), booted in QEMU (TCG)"
  local start=$SECONDS
  timeout --kill-after=30 "${TTM_VM_TIMEOUT:-3000}" env PATH="${fsd:+$fsd:}$bin:$PATH" \
    vng --run "$dir/boot/vmlinuz-$release" --disable-kvm \
      --cpus "${TTM_VM_CPUS:-2}" --memory "${TTM_VM_MEMORY:-3G}" \
      --overlay-rwdir "$PWD/target" --cwd "$PWD" \
      --exec "bash scripts/lib/kernel-suite.sh $run" </dev/null 2>&1 | tee "$log" || rc=$?
  echo "ttm-kernels-kernel $release (VM)" >>"$log"
  echo "test-kernels: $release (VM): $((SECONDS - start)) s, boot included"
  echo "test-kernels: $release (VM): $((SECONDS - start)) s, boot included" >>"$CACHE/times"
  return "$rc"
}

mkdir -p "$CACHE"
rm -f "$CACHE/times"
build
overall=0
ran=()
for k in $KERNELS; do
  ran+=("${k%%:*}")
  run_kernel "$k" || overall=1
done

say "results"
total_pass=0 total_fail=0
printf '%-26s %-20s %7s %7s %8s  %s\n' kernel test passed failed seconds result
for k in "${ran[@]}"; do
  log=$CACHE/logs/$k.log
  kernel=$(awk '/^ttm-kernels-kernel /{sub(/^ttm-kernels-kernel /,""); print}' "$log")
  kernel=${kernel:-$k}
  rows=$(grep -a '^ttm-kernels-result ' "$log" || true)
  if [ -z "$rows" ]; then
    printf '%-26s %-20s %7s %7s %8s  %s\n' "$kernel" "(none)" 0 1 - "FAILED: no result, see $log"
    total_fail=$((total_fail + 1)); overall=1
    continue
  fi
  while read -r _ name passed failed status secs; do
    printf '%-26s %-20s %7s %7s %8s  %s\n' "$kernel" "$name" "$passed" "$failed" "$secs" "$status"
    total_pass=$((total_pass + passed)); total_fail=$((total_fail + failed))
    [ "$status" = ok ] || overall=1
  done <<<"$rows"
done
cat "$CACHE/times" 2>/dev/null || true
echo "kernels: $total_pass passed, $total_fail failed"
exit "$overall"
