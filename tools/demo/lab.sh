#!/usr/bin/env bash
# A throw-away minibus.pki lab in podman, shared by `make demo` (tools/demo.sh) and
# `make test-awx` (tests/awx/test_runner.sh), so both prove the same path:
#
#   tools/demo/lab.sh up  TARBALL   image, network, containers (vault, server, client), OpenBao
#                                   dev server, the collection installed from TARBALL,
#                                   minibus.pki.vault_bootstrap, a broker token
#   tools/demo/lab.sh run           minibus.pki.site through ansible-runner, as AWX runs it:
#                                   env/envvars rendered from awx/credential_type.yml's injectors
#   tools/demo/lab.sh certs         per host: FQDN, subject, serial, notAfter (openssl on the host)
#   tools/demo/lab.sh proof         logger line on the client, waits for it in the server's log
#   tools/demo/lab.sh down          containers, state dir; the network when nobody uses it
#
# Environment (defaults are the demo's):
#   LAB=minibus-demo        container name prefix: $LAB-vault, $LAB-server, $LAB-client
#   LAB_IP_BASE=10          addresses 198.18.1.<base>, <base>+1, <base>+2
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
NODES=(vault server client)
ip_of() { case "$1" in vault) echo "198.18.1.$LAB_IP_BASE" ;; server) echo "198.18.1.$((LAB_IP_BASE + 1))" ;;
                       client) echo "198.18.1.$((LAB_IP_BASE + 2))" ;; esac; }
VAULT_URL="http://$(ip_of vault):8200"

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
  log "starting the OpenBao dev server in $LAB-vault (root token 'root', 0.0.0.0:8200)"
  # File audit device (declared: OpenBao refuses to enable one over the API). LAB_AUDIT_RAW=1 logs
  # secrets in clear, for the leak scan of tests/awx/test_runner.sh only: a test lab, never a real Vault.
  podman exec "$LAB-vault" mkdir -p /etc/bao /var/log/bao
  printf 'audit "file" "lab" {\n  options {\n    file_path = "/var/log/bao/audit.log"\n    log_raw = "%s"\n  }\n}\n' \
    "$([ "${LAB_AUDIT_RAW:-0}" = 1 ] && echo true || echo false)" |
    podman exec -i "$LAB-vault" sh -c 'cat >/etc/bao/config.hcl'
  podman exec -i "$LAB-vault" sh -c 'cat >/etc/systemd/system/bao-dev.service' <<'UNIT'
[Unit]
Description=OpenBao dev server (minibus.pki lab)
After=network-online.target

[Service]
ExecStart=/usr/local/bin/bao server -dev -dev-root-token-id=root -dev-listen-address=0.0.0.0:8200 -config /etc/bao/config.hcl
Restart=on-failure
RestartSec=1

[Install]
WantedBy=multi-user.target
UNIT
  podman exec "$LAB-vault" systemctl daemon-reload
  podman exec "$LAB-vault" systemctl enable --now bao-dev.service >/dev/null 2>&1
  local _
  for _ in $(seq 1 60); do
    curl -fsS -o /dev/null --max-time 2 "$VAULT_URL/v1/sys/health" 2>/dev/null && { log "OpenBao answers at $VAULT_URL"; return 0; }
    sleep 0.5
  done
  die "OpenBao did not answer at $VAULT_URL"
}

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
    ansible-playbook -i localhost, minibus.pki.vault_bootstrap >"$LAB_DIR/bootstrap.log" 2>&1 ||
    { tail -n 30 "$LAB_DIR/bootstrap.log" >&2; die "vault_bootstrap failed"; }
  grep -E '^localhost' "$LAB_DIR/bootstrap.log" | sed 's/^/  /' >&2 || true
  log "creating a broker token (policy minibus-broker, not root) for the controller"
  curl -fsS -H 'X-Vault-Token: root' -X POST \
    -d '{"policies":["minibus-broker"],"no_default_policy":false,"ttl":"2h","display_name":"minibus-lab-broker"}' \
    "$VAULT_URL/v1/auth/token/create" | jq -r .auth.client_token >"$LAB_DIR/broker-token"
  chmod 0600 "$LAB_DIR/broker-token"
  curl -fsS "$VAULT_URL/v1/pki/ca/pem" >"$LAB_DIR/vault-ca.pem"
}

inventory() {
  mkdir -p "$LAB_DIR/runner/inventory"
  cat >"$LAB_DIR/runner/inventory/hosts" <<INV
# minibus.pki lab inventory: the inventory decides roles and peers, site.yml stays thin.
all:
  vars:
    ansible_connection: containers.podman.podman
    ansible_python_interpreter: /usr/bin/python3
    minibus_certs_vault_url: $VAULT_URL
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
  CRED_CA_BUNDLE_FILE="$LAB_DIR/vault-ca.pem" CRED_ROLE_ID="${CRED_ROLE_ID:-}" \
  COLLECTIONS="$LAB_DIR/collections" python3 - "$repo/awx/credential_type.yml" "$pdd" <<'PY'
import os, sys, yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

ct_path, pdd = sys.argv[1], sys.argv[2]
ct = yaml.safe_load(open(ct_path))
inputs = {
    "vault_url": os.environ["CRED_VAULT_URL"],
    "vault_ca_bundle": open(os.environ["CRED_CA_BUNDLE_FILE"]).read(),
    "broker_token": open(os.environ["CRED_BROKER_TOKEN_FILE"]).read().strip(),
}
if os.environ.get("CRED_ROLE_ID"):
    inputs["role_id"] = os.environ["CRED_ROLE_ID"]
fields = {f["id"] for f in ct["inputs"]["fields"]}
missing = [r for r in ct["inputs"].get("required", []) if r not in inputs]
assert not missing, "required inputs missing: %s" % missing
# AWX: every defined field is in the namespace, unset ones as ''.
ns = {f: inputs.get(f, "") for f in fields}
env = ImmutableSandboxedEnvironment()
inj = ct["injectors"]
files = {}
for key, tmpl in (inj.get("file") or {}).items():
    name = key.split(".", 1)[1] if "." in key else "cred"
    path = os.path.join(pdd, "env", "credential_" + name)
    with open(path, "w") as fh:
        fh.write(env.from_string(tmpl).render(**ns))
    os.chmod(path, 0o600)
    files[name] = path
ns["tower"] = {"filename": files if len(files) > 1 or "cred" not in files else files["cred"]}
envvars = {k: env.from_string(v).render(**ns) for k, v in (inj.get("env") or {}).items()}
extravars = {k: env.from_string(v).render(**ns) for k, v in (inj.get("extra_vars") or {}).items()}
# Runner plumbing (not from the credential): where the collection is, no colour.
envvars.update({"ANSIBLE_COLLECTIONS_PATH": os.environ["COLLECTIONS"], "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_FORCE_COLOR": "0", "CONTAINERS_CONF": os.environ["CONTAINERS_CONF"]})
yaml.safe_dump(envvars, open(os.path.join(pdd, "env", "envvars"), "w"), default_flow_style=False)
yaml.safe_dump(extravars, open(os.path.join(pdd, "env", "extravars"), "w"), default_flow_style=False)
os.chmod(os.path.join(pdd, "env", "envvars"), 0o600)
shown = {k: ("<%d chars>" % len(v) if k == "VAULT_TOKEN" else v) for k, v in envvars.items()}
print("[render] credential env: %s" % shown, file=sys.stderr)
print("[render] credential extra_vars: %s" % extravars, file=sys.stderr)
PY
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
  cat >"$pdd/project/site.yml" <<'PB'
---
# An AWX project playbook: the job template runs this, the collection does the work.
- name: minibus.pki main job
  ansible.builtin.import_playbook: minibus.pki.site
PB
  log "ansible-runner run (ident $ident): minibus.pki.site on $(podman ps --filter label=minibus.lab="$LAB" --format '{{.Names}}' | xargs)"
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
  for n in server client; do
    podman exec "$LAB-$n" sh -c "
      s=\$(openssl x509 -in $CERT -noout -subject -nameopt compat | sed 's/^subject=//')
      r=\$(openssl x509 -in $CERT -noout -serial | sed 's/^serial=//')
      e=\$(openssl x509 -in $CERT -noout -enddate | sed 's/^notAfter=//')
      printf '%s %s %s %s\n' \"\$(hostname -f)\" \"\$s\" \"\$r\" \"\$(date -d \"\$e\" +%s)\""
  done
}

# proof: log a unique line on the client, wait (up to PROOF_TIMEOUT s) until it is in the
# server's remote log, print the line as received. Exit 1 when it does not arrive.
REMOTE_LOG="${REMOTE_LOG:-/var/log/minibus/remote.log}"
cmd_proof() {
  local tag line="" _
  tag="minibus-proof-$(date +%s)-$RANDOM"
  podman exec "$LAB-client" logger -t minibus-demo "proof $tag: sent from client.$DOMAIN over mutual TLS"
  for _ in $(seq 1 $(( ${PROOF_TIMEOUT:-20} * 2 ))); do
    line="$(podman exec "$LAB-server" grep -h "$tag" "$REMOTE_LOG" 2>/dev/null || true)"
    [ -n "$line" ] && { printf '%s\n' "$line"; return 0; }
    sleep 0.5
  done
  log "proof line $tag did not reach $LAB-server:$REMOTE_LOG"
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
  proof) cmd_proof ;;
  vault-url) echo "$VAULT_URL" ;;
  *) echo "usage: $0 up TARBALL | run [IDENT] | certs | proof | down | vault-url" >&2; exit 2 ;;
esac
