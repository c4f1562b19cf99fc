#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Run the Molecule scenario(s) of minibus.pki with rootful podman (no Docker engine).
#
#   tools/molecule.sh                   -> molecule test -s default
#   tools/molecule.sh test -s default   -> same, explicitly
#   tools/molecule.sh create|prepare|converge|verify|login -h server|destroy ...
#
# The first argument, when it is a molecule subcommand, is used as is; otherwise `test` is run
# with the arguments passed through. Environment:
#   MOLECULE_DEBIAN="12 13" Debian releases (default both; "13" for one): `test` runs the scenario once on each release's
#                           image (every instance on it); other subcommands take the first
#   MOLECULE_SKIP_IMAGE=1   do not (re)build the image
# Needs: root, podman + runc + debootstrap (apt), the venv with requirements-dev.txt on PATH.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
log() { printf '[molecule.sh] %s\n' "$*" >&2; }

# The venv of the project (Makefile: .venv) when it is not already on PATH.
if ! command -v molecule >/dev/null && [ -x "$repo/.venv/bin/molecule" ]; then
  export PATH="$repo/.venv/bin:$PATH"
fi
command -v molecule >/dev/null || { log "molecule not found (make venv)"; exit 1; }

export CONTAINERS_CONF="$repo/tools/podman/containers.conf"
# Scenarios live in molecule/ at the collection root (not extensions/molecule/).
export MOLECULE_GLOB="molecule/*/molecule.yml"
export ANSIBLE_NOCOLOR="${ANSIBLE_NOCOLOR:-1}"
export ANSIBLE_FORCE_COLOR=0
export PY_COLORS=0

# The collection as minibus.pki: build/molecule/ansible_collections/minibus/pki -> the repo.
# The collections shipped with the `ansible` package (containers.podman for the driver) are
# found next to ansible-core whatever this path says.
coll_root="$repo/build/molecule"
mkdir -p "$coll_root/ansible_collections/minibus"
ln -sfn "$repo" "$coll_root/ansible_collections/minibus/pki"
export ANSIBLE_COLLECTIONS_PATH="$coll_root"

case "${1:-}" in
  test|create|prepare|converge|idempotence|verify|side-effect|cleanup|destroy|login|list|syntax|check|reset|matrix|dependency|lint)
    cmd="$1"; shift ;;
  *) cmd="test" ;;
esac
args=("$@")
[ "${#args[@]}" -gt 0 ] || args=(-s default)

read -r -a releases <<<"${MOLECULE_DEBIAN:-12 13}"
[ "$cmd" = test ] || releases=("${releases[0]}")
overall=0
for release in "${releases[@]}"; do
  case "$release" in
    12) suite=bookworm ;;
    13) suite=trixie ;;
    *) log "MOLECULE_DEBIAN: Debian $release has no image (12 or 13)"; exit 2 ;;
  esac
  # molecule.yml picks the image localhost/minibus-debian$MINIBUS_DEBIAN:latest.
  export MINIBUS_DEBIAN="$release"
  if [ "${MOLECULE_SKIP_IMAGE:-0}" != 1 ] && [[ "$cmd" =~ ^(test|create|converge)$ ]]; then
    "$repo/tools/podman/build-image.sh" "$suite"
  fi

  if [ "$cmd" = test ]; then
    # Leftovers from an interrupted run would make `create` fail or, worse, reuse old state.
    log "cleaning up any previous instances"
    molecule destroy "${args[@]}" >/dev/null 2>&1 || true
  fi
  if [[ "$cmd" =~ ^(test|create|converge)$ ]]; then
    # After any destroy (the podman driver deletes the network), before create.
    "$repo/tools/podman/network.sh"
  fi

  log "molecule $cmd ${args[*]} on Debian $release"
  start=$SECONDS
  rc=0
  molecule "$cmd" "${args[@]}" || rc=$?
  log "molecule $cmd on Debian $release finished rc=$rc in $((SECONDS - start)) s"
  [ "$rc" = 0 ] || overall="$rc"
done
exit "$overall"
