#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Create (idempotently) the podman network the Molecule scenario uses.
#   name minibus-test, subnet 198.18.0.0/24 (inside 198.18.0.0/15, the benchmark range:
#   never use another range here), gateway 198.18.0.1 = the host / Ansible controller.
# Run with CONTAINERS_CONF=tools/podman/containers.conf. Molecule's podman driver deletes the
# network on destroy, so run this before every `molecule create`.
set -euo pipefail

NETWORK="${MINIBUS_NETWORK:-minibus-test}"
SUBNET=198.18.0.0/24
GATEWAY=198.18.0.1
log() { printf '[network] %s\n' "$*" >&2; }

if podman network exists "$NETWORK"; then
  have="$(podman network inspect --format '{{ range .Subnets }}{{ .Subnet }} {{ end }}' "$NETWORK" | xargs)"
  internal="$(podman network inspect --format '{{ .Internal }}' "$NETWORK")"
  if [ "$have" = "$SUBNET" ] && [ "$internal" = "true" ]; then
    log "$NETWORK exists ($SUBNET)"
    exit 0
  fi
  users="$(podman ps -a --filter "network=$NETWORK" --format '{{ .Names }}' | xargs)"
  if [ -n "$users" ]; then
    log "ERROR: $NETWORK has subnet '$have' internal=$internal, want $SUBNET internal=true," \
        "and containers use it ($users): run 'tools/molecule.sh destroy' first"
    exit 1
  fi
  log "$NETWORK exists with subnet '$have' internal=$internal: recreating"
  podman network rm "$NETWORK" >/dev/null
fi
podman network create --internal --subnet "$SUBNET" --gateway "$GATEWAY" "$NETWORK" >/dev/null
log "created $NETWORK ($SUBNET, gateway $GATEWAY)"
