#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Install the Debian packages of tools/packages.txt that an entry point needs and that are missing.
#   tools/os-packages.sh test|demo
# Quiet: one line on stderr; apt's output goes to a log file (OS_PACKAGES_LOG, default
# build/os-packages.log), whose last lines are shown when apt fails. As root on Debian it installs;
# otherwise it names what is missing and how to install it, and fails: no test is skipped quietly
# for a missing package.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
purpose="${1:-}"
case "$purpose" in
  test|demo) ;;
  *) echo "usage: $0 test|demo" >&2; exit 2 ;;
esac
log="${OS_PACKAGES_LOG:-$repo/build/os-packages.log}"

mapfile -t wanted < <(awk -v p="$purpose" '!/^[[:space:]]*(#|$)/ {
    for (i = 2; i <= NF && $i ~ /^(test|demo)$/; i++) if ($i == p) { print $1; break } }' "$repo/tools/packages.txt")
[ "${#wanted[@]}" -gt 0 ] || { echo "os-packages: tools/packages.txt lists nothing for $purpose" >&2; exit 1; }

if ! command -v dpkg-query >/dev/null; then
  echo "os-packages: this is not Debian (no dpkg-query): install the equivalents of ${wanted[*]} yourself" >&2
  exit 1
fi
missing=()
for p in "${wanted[@]}"; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "os-packages: all ${#wanted[@]} packages for $purpose present" >&2
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "os-packages: $purpose needs the Debian packages ${missing[*]}: run 'sudo $0 $purpose' (or run as root) first" >&2
  exit 1
fi

mkdir -p "$(dirname "$log")"
echo "os-packages: installing ${missing[*]} (apt log: $log)" >&2
t0=$SECONDS
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -q && apt-get install -y -q "${missing[@]}"; } >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  echo "os-packages: apt-get failed (whole log: $log)" >&2
  exit 1
fi
echo "os-packages: installed ${#missing[@]} packages in $((SECONDS - t0)) s" >&2
