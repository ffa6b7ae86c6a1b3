#!/usr/bin/env bash
# Installs, with apt-get, those of the given Debian packages that are not installed yet.
#
# Usage: scripts/install-missing.sh PACKAGE...
set -euo pipefail

missing=()
for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
        missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-missing: installing ${missing[*]}"
[ "$(id -u)" -eq 0 ] || { echo "install-missing: run as root to install ${missing[*]}" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq </dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
