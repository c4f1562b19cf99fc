#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# A throw-away minibus.pki lab in podman, shared by `make demo` (tools/demo.sh) and
# `make test-awx` (tests/awx/test_runner.sh), so both prove the same path:
#
#   tools/demo/lab.sh up  TARBALL   image, network, containers (vault, server, client), OpenBao
#                                   dev server over HTTPS (tools/devbao.py: its CA in
#                                   $LAB_DIR/vault-tls/ca.pem, copied to the hosts as
#                                   /etc/ssl/minibus-vault-ca.pem), the collection installed from TARBALL,
#                                   minibus.pki.vault_bootstrap, a broker token
#   tools/demo/lab.sh run           minibus.pki.site through ansible-runner, as AWX runs it:
#                                   env/envvars rendered from awx/credential_type.yml's injectors
#   tools/demo/lab.sh certs         per host: FQDN, subject, serial, notAfter (openssl on the host)
#   tools/demo/lab.sh proof         logger line on the client, waits for it in the server's log
#   tools/demo/lab.sh down          containers, state dir; the network when nobody uses it
#
# Environment (defaults are the demo's):
#   LAB=minibus-demo        container name prefix: $LAB-vault, $LAB-server, $LAB-client
#   LAB_IP_BASE=10          addresses 198.18.1.<base>, <base>+1, <base>+2, ...
#   LAB_NODES="vault server client"   the containers, vault first (certs: every other node)
#   LAB_DIR=build/$LAB      state: collections/, runner/ (ansible-runner private_data_dir), ...
# Network: minibus-demo, internal, 198.18.1.0/24 (inside 198.18.0.0/15; never another range),
# gateway 198.18.1.1 = this host, which reaches the containers through the bridge.
# Names inside the containers: vault/server/client.minibus.test (--add-host, no DNS needed).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LAB="${LAB:-minibus-demo}"
LAB_IP_BASE="${LAB_IP_BASE:-10}"
LAB_DIR="${LAB_DIR:-$repo/build/$LAB}"
NETWORK=minibus-demo
SUBNET=198.18.1.0/24
GATEWAY=198.18.1.1
IMAGE="${IMAGE:-localhost/minibus-debian12:latest}"
DOMAIN=minibus.test
# LAB_NODES: the containers, vault first (the fleet example's lab: "vault logs web1 web2"); each
# gets the address 198.18.1.<base + its index> and the name <node>.minibus.test.
read -r -a NODES <<<"${LAB_NODES:-vault server client}"
[ "${NODES[0]}" = vault ] || { echo "LAB_NODES must start with vault" >&2; exit 2; }
ip_of() {
  local i
  for i in "${!NODES[@]}"; do [ "${NODES[$i]}" = "$1" ] && { echo "198.18.1.$((LAB_IP_BASE + i))"; return; }; done
  echo "ip_of: no node $1 in LAB_NODES" >&2; return 1
}
# The controller reaches Vault by address, the hosts by name: the launcher's server certificate
# covers both (tools/devbao.py container --name vault.minibus.test --ip <address>).
VAULT_URL="https://$(ip_of vault):8200"
HOST_VAULT_URL="https://vault.$DOMAIN:8200"
# Where the hosts find the CA that signed Vault's certificate (as an administrator installs it).
HOST_VAULT_CA=/etc/ssl/minibus-vault-ca.pem

export CONTAINERS_CONF="$repo/tools/podman/containers.conf"
[ -x "$repo/.venv/bin/ansible" ] && export PATH="$repo/.venv/bin:$PATH"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
log() { printf '[lab %s] %s\n' "$LAB" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------------- up
network_up() {
  if podman network exists "$NETWORK"; then
    have="$(podman network inspect --format '{{ range .Subnets }}{{ .Subnet }} {{ end }}' "$NETWORK" | xargs)"
    [ "$have" = "$SUBNET" ] || die "network $NETWORK exists with subnet '$have', want $SUBNET"
  else
    log "creating network $NETWORK ($SUBNET, internal, gateway $GATEWAY)"
    podman network create --internal --subnet "$SUBNET" --gateway "$GATEWAY" "$NETWORK" >/dev/null
  fi
}

containers_up() {
  local n hosts=()
  for n in "${NODES[@]}"; do hosts+=(--add-host "$n.$DOMAIN:$(ip_of "$n")"); done
  for n in "${NODES[@]}"; do
    podman container exists "$LAB-$n" && die "container $LAB-$n exists: run '$0 down' first"
    log "starting container $LAB-$n ($n.$DOMAIN, $(ip_of "$n"), systemd)"
    podman run -d --name "$LAB-$n" --hostname "$n.$DOMAIN" \
      --network "$NETWORK" --ip "$(ip_of "$n")" "${hosts[@]}" \
      --systemd=always --label "minibus.lab=$LAB" "$IMAGE" /sbin/init >/dev/null 2>"$LAB_DIR/podman-run.err" ||
      { cat "$LAB_DIR/podman-run.err" >&2; die "podman run $LAB-$n failed"; }
  done
  for n in "${NODES[@]}"; do
    local s="" _
    for _ in $(seq 1 60); do
      s="$(podman exec "$LAB-$n" systemctl is-system-running 2>/dev/null || true)"
      [[ "$s" == running || "$s" == degraded ]] && break
      sleep 0.5
    done
    [[ "$s" == running || "$s" == degraded ]] || die "$LAB-$n: systemd not up ($s)"
  done
  log "systemd is up in ${NODES[*]}"
}

bao_up() {
  log "starting the OpenBao dev server over HTTPS in $LAB-vault (tools/devbao.py; root token 'root', 0.0.0.0:8200)"
  # CA (the lab's Vault TLS CA, $LAB_DIR/vault-tls/ca.pem), server certificate, config.hcl (TLS
  # listener, file audit device) and bao-dev.service from the project's one launcher. LAB_AUDIT_RAW=1
  # logs secrets in clear, for the leak scan of tests/awx/test_runner.sh only: a test lab.
  local raw=() f
  [ "${LAB_AUDIT_RAW:-0}" = 1 ] && raw=(--audit-raw)
  python3 "$repo/tools/devbao.py" container "$LAB_DIR/vault-tls" --name "vault.$DOMAIN" --ip "$(ip_of vault)" "${raw[@]}" >&2
  podman exec "$LAB-vault" mkdir -p /etc/bao /var/log/bao
  for f in server.pem server-key.pem config.hcl; do podman cp "$LAB_DIR/vault-tls/$f" "$LAB-vault:/etc/bao/$f"; done
  podman exec "$LAB-vault" chmod 0600 /etc/bao/server-key.pem
  podman cp "$LAB_DIR/vault-tls/bao-dev.service" "$LAB-vault:/etc/systemd/system/bao-dev.service"
  podman exec "$LAB-vault" systemctl daemon-reload
  podman exec "$LAB-vault" systemctl enable --now bao-dev.service >/dev/null 2>&1
  for f in "${NODES[@]:1}"; do
    podman cp "$LAB_DIR/vault-tls/ca.pem" "$LAB-$f:$HOST_VAULT_CA"
    podman exec "$LAB-$f" chmod 0644 "$HOST_VAULT_CA"
  done
  local _
  for _ in $(seq 1 60); do
    vcurl -o /dev/null --max-time 2 "$VAULT_URL/v1/sys/health" 2>/dev/null && { log "OpenBao answers at $VAULT_URL (verified with $LAB_DIR/vault-tls/ca.pem)"; return 0; }
    sleep 0.5
  done
  die "OpenBao did not answer at $VAULT_URL"
}

# curl trusting the lab's Vault TLS CA only
vcurl() { curl -fsS --cacert "$LAB_DIR/vault-tls/ca.pem" "$@"; }

collection_up() {
  local tarball="$1"
  log "installing $(basename "$tarball") offline into $LAB_DIR/collections"
  rm -rf "$LAB_DIR/collections"
  ansible-galaxy collection install --offline --force -p "$LAB_DIR/collections" "$tarball" >"$LAB_DIR/install.log" 2>&1 ||
    { cat "$LAB_DIR/install.log" >&2; die "collection install failed"; }
}

bootstrap() {
  log "configuring PKI + AppRole with minibus.pki.vault_bootstrap (installed copy, root token)"
  ANSIBLE_COLLECTIONS_PATH="$LAB_DIR/collections" VAULT_ADDR="$VAULT_URL" VAULT_TOKEN=root \
    ansible-playbook -i localhost, minibus.pki.vault_bootstrap -e minibus_vault_ca_cert="$LAB_DIR/vault-tls/ca.pem" \
    -e minibus_vault_trust_anchor_dest="$LAB_DIR/root-ca.pem" >"$LAB_DIR/bootstrap.log" 2>&1 ||
    { tail -n 30 "$LAB_DIR/bootstrap.log" >&2; die "vault_bootstrap failed"; }
  grep -E '^localhost' "$LAB_DIR/bootstrap.log" | sed 's/^/  /' >&2 || true
  log "creating a broker token (policy minibus-broker, not root) for the controller"
  vcurl -H 'X-Vault-Token: root' -X POST \
    -d '{"policies":["minibus-broker"],"no_default_policy":false,"ttl":"2h","display_name":"minibus-lab-broker"}' \
    "$VAULT_URL/v1/auth/token/create" | jq -r .auth.client_token >"$LAB_DIR/broker-token"
  chmod 0600 "$LAB_DIR/broker-token"
}

inventory() {
  mkdir -p "$LAB_DIR/runner/inventory"
  cat >"$LAB_DIR/runner/inventory/hosts" <<INV
# minibus.pki lab inventory: the inventory decides roles and peers, site.yml stays thin.
all:
  vars:
    ansible_connection: containers.podman.podman
    ansible_python_interpreter: /usr/bin/python3
    minibus_certs_vault_url: $HOST_VAULT_URL
    minibus_certs_vault_ca_cert: $HOST_VAULT_CA
    # Where node_exporter's textfile collector (Debian's path) finds the renewer's metrics.
    minibus_certs_metrics_textfile_dir: /var/lib/prometheus/node-exporter
  children:
    rsyslog_servers:
      hosts:
        server.$DOMAIN:
          ansible_host: $LAB-server
      vars:
        minibus_certs_rsyslog_role: server
        minibus_certs_rsyslog_permitted_peers:
          - "*.$DOMAIN"
    rsyslog_clients:
      hosts:
        client.$DOMAIN:
          ansible_host: $LAB-client
      vars:
        minibus_certs_rsyslog_role: client
        minibus_certs_rsyslog_server_address: server.$DOMAIN
        minibus_certs_rsyslog_server_name: server.$DOMAIN
INV
}

cmd_up() {
  local tarball="${1:?usage: $0 up TARBALL}"
  tarball="$(readlink -f "$tarball")"
  [ -f "$tarball" ] || die "no tarball $tarball (make dist)"
  mkdir -p "$LAB_DIR"
  local t0=$SECONDS
  log "building/checking the image $IMAGE (first time: debootstrap, about 1-2 minutes)"
  "$repo/tools/podman/build-image.sh" 2>&1 | sed 's/^/  /' >&2
  network_up
  containers_up
  bao_up
  collection_up "$tarball"
  bootstrap
  inventory
  log "lab up in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------------------------- run
# The AWX way: a private_data_dir with env/envvars (the credential's injected environment),
# env/extravars (its injected extra vars), inventory/hosts, project/ (a project playbook that
# imports minibus.pki.site), and ansible-runner on it. The credential's values are rendered
# from awx/credential_type.yml's injectors with AWX's sandboxed Jinja2, so the real injector
# definitions are what is tested.
render_credential() {
  local pdd="$1"
  CRED_VAULT_URL="$VAULT_URL" CRED_BROKER_TOKEN_FILE="$LAB_DIR/broker-token" \
  CRED_CA_BUNDLE_FILE="$LAB_DIR/vault-tls/ca.pem" CRED_ROLE_ID="${CRED_ROLE_ID:-}" \
  JOB_TRUST_ANCHOR_FILE="$LAB_DIR/root-ca.pem" \
  COLLECTIONS="$LAB_DIR/collections" python3 "$repo/tools/demo/awx_credential.py" "$repo/awx/credential_type.yml" "$pdd"
}

cmd_run() {
  local ident="${1:-site-$(date +%s)}"
  local pdd="$LAB_DIR/runner"
  [ -s "$LAB_DIR/broker-token" ] || die "lab is not up ($LAB_DIR/broker-token missing)"
  mkdir -p "$pdd/env" "$pdd/project"
  inventory
  render_credential "$pdd"
  # LAB_VERBOSITY=4 runs the job at -vvvv (what an AWX job template's verbosity 4 does).
  if [ -n "${LAB_VERBOSITY:-}" ]; then printf -- '-%s\n' "$(printf 'v%.0s' $(seq 1 "$LAB_VERBOSITY"))" >"$pdd/env/cmdline"; fi
  # LAB_PLAYBOOK=minibus.pki.recover: the scheduled job template instead of the main one.
  local playbook="${LAB_PLAYBOOK:-minibus.pki.site}"
  cat >"$pdd/project/site.yml" <<PB
---
# An AWX project playbook: the job template runs this, the collection does the work.
- name: minibus.pki job ($playbook)
  ansible.builtin.import_playbook: $playbook
PB
  log "ansible-runner run (ident $ident): $playbook on $(podman ps --filter label=minibus.lab="$LAB" --format '{{.Names}}' | xargs)"
  local t0=$SECONDS rc=0
  # The controller's own shell credentials must not leak in: only the injected ones count.
  env -u VAULT_ADDR -u VAULT_TOKEN -u VAULT_CACERT -u BAO_ADDR -u BAO_TOKEN -u MINIBUS_CSR_SECRET_ID \
    ansible-runner run "$pdd" -p site.yml --ident "$ident" >"$LAB_DIR/runner-$ident.log" 2>&1 || rc=$?
  local status
  status="$(cat "$pdd/artifacts/$ident/status" 2>/dev/null || echo unknown)"
  grep -A6 '^PLAY RECAP' "$LAB_DIR/runner-$ident.log" | sed 's/^/  /' >&2 || true
  log "ansible-runner finished: status=$status rc=$rc in $((SECONDS - t0)) s (log $LAB_DIR/runner-$ident.log)"
  if [ "$status" != successful ]; then
    grep -E 'fatal:|FAILED|ERROR' "$LAB_DIR/runner-$ident.log" | head -n 20 >&2 || true
    return 1
  fi
}

# ---------------------------------------------------------------------------------- checks
# certs: one line per rsyslog host, read on the host with openssl:
#   <container> <subject> <serial> <notAfter epoch>
CERT=/var/lib/minibus-certs/tls/cert.pem
cmd_certs() {
  local n
  for n in "${NODES[@]:1}"; do
    podman exec "$LAB-$n" sh -c "
      s=\$(openssl x509 -in $CERT -noout -subject -nameopt compat | sed 's/^subject=//')
      r=\$(openssl x509 -in $CERT -noout -serial | sed 's/^serial=//')
      e=\$(openssl x509 -in $CERT -noout -enddate | sed 's/^notAfter=//')
      printf '%s %s %s %s\n' \"\$(hostname -f)\" \"\$s\" \"\$r\" \"\$(date -d \"\$e\" +%s)\""
  done
}

# proof [CLIENT [SERVER]]: log a unique line on CLIENT (default client), wait (up to PROOF_TIMEOUT s)
# until it is in SERVER's (default server) remote log, print the line as received. Exit 1 when it
# does not arrive.
REMOTE_LOG="${REMOTE_LOG:-/var/log/minibus/remote.log}"
cmd_proof() {
  local client="${1:-client}" server="${2:-server}" tag line="" _
  tag="minibus-proof-$(date +%s)-$RANDOM"
  podman exec "$LAB-$client" logger -t minibus-demo "proof $tag: sent from $client.$DOMAIN over mutual TLS"
  for _ in $(seq 1 $(( ${PROOF_TIMEOUT:-20} * 2 ))); do
    line="$(podman exec "$LAB-$server" grep -h "$tag" "$REMOTE_LOG" 2>/dev/null || true)"
    [ -n "$line" ] && { printf '%s\n' "$line"; return 0; }
    sleep 0.5
  done
  log "proof line $tag did not reach $LAB-$server:$REMOTE_LOG"
  return 1
}

# ---------------------------------------------------------------------------------- down
cmd_down() {
  local n
  for n in "${NODES[@]}"; do
    if podman container exists "$LAB-$n"; then
      log "removing container $LAB-$n"
      podman rm -f -t 2 "$LAB-$n" >/dev/null
    fi
  done
  if podman network exists "$NETWORK" && [ -z "$(podman ps -a --filter "network=$NETWORK" --format '{{.Names}}')" ]; then
    log "removing network $NETWORK"
    podman network rm "$NETWORK" >/dev/null
  fi
  if [ -d "$LAB_DIR" ]; then
    log "removing $LAB_DIR"
    rm -rf --one-file-system "$LAB_DIR"
  fi
}

case "${1:-}" in
  up) shift; cmd_up "$@" ;;
  run) shift; cmd_run "$@" ;;
  down) cmd_down ;;
  certs) cmd_certs ;;
  proof) shift; cmd_proof "$@" ;;
  vault-url) echo "$VAULT_URL" ;;
  vault-ca) echo "$LAB_DIR/vault-tls/ca.pem" ;;
  *) echo "usage: $0 up TARBALL | run [IDENT] | certs | proof [CLIENT [SERVER]] | down | vault-url | vault-ca" >&2; exit 2 ;;
esac
