#!/usr/bin/env bash
# Installs the system packages ttm's build, demo and tests need, and nothing
# when they are all present. Debian/Ubuntu (apt-get); run as root.
set -euo pipefail

# Each scripts/deps/*.list names the Debian packages one part of the
# project needs (one per line, # comments).
mapfile -t PACKAGES < <(cat "$(dirname "$0")"/deps/*.list | sed 's/#.*//' | awk 'NF{print $1}' | sort -u)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "ttm: missing packages: ${missing[*]}; run as root or install them" >&2
  exit 1
fi
echo "ttm: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Packages named NAME:ARCH come from another Debian architecture
# (multiarch), which dpkg must know before apt-get update.
for arch in $(printf '%s\n' "${missing[@]}" | sed -n 's/^[^:]*:\([a-z0-9]*\)$/\1/p' | sort -u); do
  if [ "$arch" != "$(dpkg --print-architecture)" ] \
    && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    echo "ttm: adding the Debian architecture $arch (multiarch)" >&2
    dpkg --add-architecture "$arch"
  fi
done
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's nginx starts a system instance on install; the demo and tests run
# their own, so do not leave one listening on :80.
if [[ " ${missing[*]} " == *" nginx-light "* ]] && command -v systemctl >/dev/null; then
  systemctl disable --now nginx >/dev/null 2>&1 || true
fi
# Only promtool is wanted from the prometheus package, not its server.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null; then
  systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
