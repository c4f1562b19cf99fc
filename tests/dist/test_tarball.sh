#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Smoke test of the built collection tarball, as a user gets it:
#   1. install it offline into an EMPTY collections path (no Galaxy, no network);
#   2. with ANSIBLE_COLLECTIONS_PATH = that path only (plus the collections shipped inside the
#      `ansible` package, which ansible-core always finds), check that ansible-doc sees the
#      modules, the lookup and the role;
#   3. start an OpenBao dev server over HTTPS (the repository's tools/devbao.py: test tooling, not
#      shipped), run minibus.pki.vault_bootstrap from the installed copy trusting the server's CA
#      (minibus_vault_ca_cert), mint a wrapped secret id with the lookup (broker token, not root;
#      VAULT_CACERT) and issue a certificate with minibus.pki.vault_pki_issue into a temp dir:
#      changed, then unchanged.
# Usage: tests/dist/test_tarball.sh dist/minibus-pki-<version>.tar.gz   (make test-dist)
set -euo pipefail

tarball="$(readlink -f "${1:?usage: $0 TARBALL}")"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ -x "$repo/.venv/bin/ansible" ] && export PATH="$repo/.venv/bin:$PATH"
work="$(mktemp -d /tmp/minibus-test-dist.XXXXXX)"
coll="$work/collections"
pass=0 fail=0
log() { printf '[test-dist] %s\n' "$*" >&2; }
ok() { pass=$((pass + 1)); log "PASS $*"; }
ko() { fail=$((fail + 1)); log "FAIL $*"; }
cleanup() {
  python3 "$repo/tools/devbao.py" stop "$work/bao" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# Nothing from the user's or the repo's collections may leak in.
unset ANSIBLE_COLLECTIONS_PATHS VAULT_ADDR VAULT_TOKEN VAULT_CACERT BAO_ADDR BAO_TOKEN MINIBUS_CSR_SECRET_ID
export ANSIBLE_COLLECTIONS_PATH="$coll" ANSIBLE_NOCOLOR=1 ANSIBLE_HOME="$work/ansible-home"
export ANSIBLE_COLLECTIONS_SCAN_SYS_PATH=false ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false
cd "$work"  # no ansible.cfg, no collections/ next to a playbook

log "tarball $(basename "$tarball"): $(stat -c %s "$tarball") bytes"
if leaked="$(tar -tzf "$tarball" | grep -E '^(\./)?(\.venv|build|dist|tests/output|bench/results|\.git|\.ansible)/' | head -n 3)" && [ -n "$leaked" ]; then
  ko "tarball contains build leftovers: $leaked"
else
  ok "tarball holds no .venv/build/dist/tests/output/bench/results"
fi

mkdir -p "$coll"
if ansible-galaxy collection install --offline -p "$coll" "$tarball" >"$work/install.log" 2>&1; then
  ok "offline install into an empty collections path"
else
  cat "$work/install.log" >&2; ko "offline install"; log "$pass passed, $fail failed"; exit 1
fi
installed="$coll/ansible_collections/minibus/pki"
if [ -f "$installed/MANIFEST.json" ]; then ok "installed copy has MANIFEST.json"; else ko "no MANIFEST.json in $installed"; fi
# The installed copy must be what ansible resolves minibus.pki to (not the repo).
where="$(ansible-galaxy collection list minibus.pki -p "$coll" 2>/dev/null | grep -c 'minibus.pki' || true)"
if [ "$where" -ge 1 ]; then ok "ansible-galaxy lists minibus.pki in $coll"; else ko "ansible-galaxy collection list"; fi

modules="$(ansible-doc -t module -l minibus.pki 2>/dev/null | awk '{print $1}' | sort | xargs)"
if [ "$modules" = "minibus.pki.core_library minibus.pki.vault_approle_login minibus.pki.vault_audit minibus.pki.vault_pki_issue minibus.pki.vault_unwrap" ]; then ok "ansible-doc lists the 5 modules"; else ko "modules: '$modules'"; fi
lookups="$(ansible-doc -t lookup -l minibus.pki 2>/dev/null | awk '{print $1}' | xargs)"
if [ "$lookups" = "minibus.pki.vault_secret_id" ]; then ok "ansible-doc lists the lookup"; else ko "lookups: '$lookups'"; fi
roles="$(ansible-doc -t role -l minibus.pki 2>/dev/null | awk '{print $1}' | xargs)"
if [[ "$roles" == *minibus.pki.minibus_certs* ]]; then ok "ansible-doc lists the role"; else ko "roles: '$roles'"; fi
if ansible-doc -t role minibus.pki.minibus_certs 2>/dev/null | grep -q minibus_certs_vault_url; then ok "role documentation renders"; else ko "ansible-doc -t role minibus.pki.minibus_certs"; fi
# Playbooks in a collection need no runtime entry: both resolve by FQCN.
for pb in site vault_bootstrap; do
  if ansible-playbook --syntax-check -i localhost, "minibus.pki.$pb" >/dev/null 2>&1; then ok "minibus.pki.$pb resolves (syntax-check)"; else ko "minibus.pki.$pb does not resolve"; fi
done

# --- live: dev server, bootstrap, lookup, vault_pki_issue, all from the installed copy -------
python3 "$repo/tools/devbao.py" start "$work/bao" >/dev/null
addr="$(cat "$work/bao/url")" cacert="$work/bao/ca.pem"
if [[ "$addr" == https://* ]]; then ok "dev server at $addr (CA $cacert)"; else ko "dev server URL '$addr' is not https"; fi
if VAULT_ADDR="$addr" VAULT_TOKEN=root ansible-playbook -i localhost, minibus.pki.vault_bootstrap \
     -e minibus_vault_ca_cert="$cacert" -e minibus_vault_trust_anchor_dest="$work/root-ca.pem" >"$work/bootstrap.log" 2>&1; then
  ok "minibus.pki.vault_bootstrap (installed copy)"
else
  tail -n 30 "$work/bootstrap.log" >&2; ko "vault_bootstrap"; log "$pass passed, $fail failed"; exit 1
fi
broker="$(curl -fsS --cacert "$cacert" -H 'X-Vault-Token: root' -X POST -d '{"policies":["minibus-broker"],"ttl":"1h"}' \
  "$addr/v1/auth/token/create" | python3 -c 'import json,sys; print(json.load(sys.stdin)["auth"]["client_token"])')"

cat >"$work/smoke.yml" <<'YAML'
- name: Smoke test of the installed minibus.pki
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
    dir: "{{ lookup('ansible.builtin.env', 'SMOKE_DIR') }}"
    issue: &issue
      url: "{{ lookup('ansible.builtin.env', 'VAULT_ADDR') }}"
      role_id: minibus/csr
      approle_name: minibus-generate-sign-server-keys
      common_name: smoke.minibus.test
      subject: {state: rengthining, locality: iberty}
      cert_path: "{{ dir }}/cert.pem"
      key_path: "{{ dir }}/key.pem"
      ca_path: "{{ dir }}/ca.pem"
  tasks:
    - name: Mint a wrapped secret id with the broker token (lookup, controller side)
      ansible.builtin.set_fact:
        wrapping_token: "{{ lookup('minibus.pki.vault_secret_id', 'minibus-generate-sign-server-keys') }}"
      no_log: true

    - name: Issue a certificate (first run)
      minibus.pki.vault_pki_issue:
        <<: *issue
        secret_id_wrapping_token: "{{ wrapping_token }}"
      register: first

    - name: Same request again (a fresh wrapped secret id; the valid certificate needs none)
      minibus.pki.vault_pki_issue:
        <<: *issue
        secret_id_wrapping_token: "{{ lookup('minibus.pki.vault_secret_id', 'minibus-generate-sign-server-keys') }}"
      register: second

    - name: Report
      ansible.builtin.debug:
        msg: "first changed={{ first.changed }} serial={{ first.serial }}; second changed={{ second.changed }} reason={{ second.reason }}"

    - name: Changed, then idempotent
      ansible.builtin.assert:
        that:
          - first is changed
          - first.issued
          - second is not changed
          - second.serial == first.serial
YAML
mkdir -p "$work/pki"
if SMOKE_DIR="$work/pki" VAULT_ADDR="$addr" VAULT_CACERT="$cacert" VAULT_TOKEN="$broker" \
     ansible-playbook -i localhost, "$work/smoke.yml" >"$work/smoke.log" 2>&1; then
  ok "lookup (broker token) + vault_pki_issue: changed, then unchanged"
  grep -E '"msg"|msg:' "$work/smoke.log" | head -n 2 >&2 || true
else
  tail -n 40 "$work/smoke.log" >&2; ko "smoke play"
fi
if subj="$(openssl x509 -in "$work/pki/cert.pem" -noout -subject -nameopt compat 2>/dev/null)" &&
   [[ "$subj" == *CN=smoke.minibus.test* && "$subj" == *ST=rengthining* && "$subj" == *L=iberty* ]]; then
  ok "certificate subject: $subj"
else
  ko "certificate subject: '${subj:-none}'"
fi

log "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
