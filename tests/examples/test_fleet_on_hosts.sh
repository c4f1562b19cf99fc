#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The README's fleet example, whole, on real hosts: README.md's inventory.yml and fleet.yml as pasted
# (labs/readme.py writes them with the examples' one substitution rule: only the Vault address, the
# CA file and the domain change), run with ansible-playbook as the README says, against a podman lab
# (tools/demo/lab.sh: systemd containers vault, logs, web1 and web2 .minibus.test, OpenBao over
# HTTPS, bootstrapped with minibus.pki.vault_bootstrap from the tarball, a broker token). The one
# addition is a second inventory that tells Ansible how to reach the containers (what a user's ssh
# configuration does), and HOME pointing at a directory holding the bootstrap's root-ca.pem where
# the example's lookup reads it.
# Asserts: the first run succeeds and changes every host; the role README's playbook, run after it
# on the same hosts, changes nothing and sends no request to Vault (OpenBao's audit log): it is the
# README's idempotent second run, and both examples describe the same fleet; each host's certificate
# has CN = its FQDN, ST=rengthining, L=iberty; a logger line from each client reaches the log
# server over mutual TLS.
# Usage: tests/examples/test_fleet_on_hosts.sh dist/minibus-pki-<version>.tar.gz   (make test-examples)
#   KEEP_LAB=1  leave the lab running afterwards
set -euo pipefail
tarball="$(readlink -f "${1:?usage: $0 TARBALL}")"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export LAB="${LAB:-minibus-fleet}" LAB_IP_BASE="${LAB_IP_BASE:-30}" LAB_NODES="vault logs web1 web2"
# shellcheck source=tools/demo/lab-checks.sh
. "$repo/tools/demo/lab-checks.sh"
t0=$SECONDS
lab_checks_start fleet-example "$tarball" "vault, logs, web1, web2; OpenBao bootstrapped from the tarball"

example="$LAB_DIR/example"
mapfile -t playbooks < <(cd "$repo" && python3 -m labs.readme fleet "$example" \
  --url "https://vault.minibus.test:8200" --ca /etc/ssl/minibus-vault-ca.pem)
# README.md's fleet playbook first, then the role README's.
if [ "${#playbooks[@]}" -lt 2 ] || [[ "${playbooks[0]}" != README-block* ]]; then
  ko "expected README.md's fleet playbook and the role README's, got: ${playbooks[*]}"; finish; exit 1
fi
cat >"$example/connection.yml" <<INV
# How Ansible reaches the lab's containers (a user's ssh configuration does this for real hosts).
all:
  vars:
    ansible_connection: containers.podman.podman
    ansible_python_interpreter: /usr/bin/python3
  hosts:
    logs.minibus.test: {ansible_host: $LAB-logs}
    web1.minibus.test: {ansible_host: $LAB-web1}
    web2.minibus.test: {ansible_host: $LAB-web2}
INV
home="$LAB_DIR/home"
mkdir -p "$home/.minibus.pki"
cp "$LAB_DIR/root-ca.pem" "$home/.minibus.pki/root-ca.pem"

# The README's command line, with the broker token in VAULT_TOKEN on the controller.
play() {  # play PLAYBOOK IDENT
  env -u VAULT_ADDR -u VAULT_TOKEN -u VAULT_CACERT -u BAO_ADDR -u BAO_TOKEN -u MINIBUS_CSR_SECRET_ID -u ANSIBLE_CONFIG \
    HOME="$home" ANSIBLE_COLLECTIONS_PATH="$LAB_DIR/collections" \
    VAULT_ADDR="$("$lab" vault-url)" VAULT_CACERT="$("$lab" vault-ca)" VAULT_TOKEN="$(cat "$LAB_DIR/broker-token")" \
    ansible-playbook -i "$example/inventory.yml" -i "$example/connection.yml" "$example/$1" >"$LAB_DIR/$2.log" 2>&1
}
# "<host>=<changed>,<failed+unreachable> ..." from a run's PLAY RECAP
recap() {
  sed -n '/^PLAY RECAP/,$p' "$LAB_DIR/$1.log" |
    sed -nE 's/^([^ ]+) +: ok=[0-9]+ +changed=([0-9]+) +unreachable=([0-9]+) +failed=([0-9]+).*/\1=\2,\3\4/p' |
    sort | xargs
}
requests() { podman exec "$LAB-vault" grep -c '"type":"request"' /var/log/bao/audit.log || true; }

if play "${playbooks[0]}" first; then
  r="$(recap first)"
  if [[ "$r" =~ ^logs.minibus.test=[1-9][0-9]*,00\ web1.minibus.test=[1-9][0-9]*,00\ web2.minibus.test=[1-9][0-9]*,00$ ]]; then
    ok "README.md fleet example, run 1: every host changed, none failed ($r)"
  else ko "run 1 recap: $r"; fi
else
  ko "run 1 failed: $(grep -E 'fatal:|ERROR' "$LAB_DIR/first.log" | head -5 | cut -c1-400)"
fi

# The re-run: every other playbook applying the role (the role README's), or README.md's again when
# there is no other. Both examples describe the same fleet, so it changes nothing and, as the README
# says of a second run, sends no request to Vault.
again=("${playbooks[@]:1}")
[ "${#again[@]}" -gt 0 ] || again=("${playbooks[0]}")
for playbook in "${again[@]}"; do
  before="$(requests)"
  if play "$playbook" "again-$playbook"; then
    r="$(recap "again-$playbook")"
    if [ "$r" = "logs.minibus.test=0,00 web1.minibus.test=0,00 web2.minibus.test=0,00" ]; then ok "$playbook on the fleet run 1 built: nothing changed ($r)"
    else ko "$playbook changed the fleet run 1 built: $r"; fi
  else
    ko "$playbook failed: $(grep -E 'fatal:|ERROR' "$LAB_DIR/again-$playbook.log" | head -5 | cut -c1-400)"
  fi
  after="$(requests)"
  if [ "$before" -gt 0 ] && [ "$after" = "$before" ]; then ok "$playbook sent no request to Vault (audit log: $before requests before and after)"
  else ko "$playbook sent $((after - before)) requests to Vault (audit log $before -> $after)"; fi
done

now="$(date +%s)" seen=0
while read -r fqdn subject serial not_after; do
  seen=$((seen + 1))
  if [[ "$subject" == *"CN=$fqdn"* && "$subject" == *"ST=rengthining"* && "$subject" == *"L=iberty"* ]]; then
    ok "$fqdn certificate: $subject serial $serial, expires in $(( (not_after - now) / 3600 )) h"
  else
    ko "$fqdn certificate subject '$subject'"
  fi
done < <("$lab" certs)
[ "$seen" -eq 3 ] || ko "certificates read on $seen of 3 hosts"

for client in web1 web2; do
  if line="$("$lab" proof "$client" logs)"; then ok "a logger line from $client reached logs over mutual TLS: $line"
  else ko "a log line from $client did not reach logs within 20 s"; fi
done

log "total $((SECONDS - t0)) s"
finish
