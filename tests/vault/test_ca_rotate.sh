#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Intermediate CA rotation (playbooks/ca_rotate.yml) against a real OpenBao dev server that this
# script starts and bootstraps with playbooks/vault_bootstrap.yml:
#   rotate: a new default issuer under the same root; a new certificate chains through it to the
#           same root (the pinned trust anchor), an old one still verifies against that root;
#   retire: refused with one sentence while a certificate of the old intermediate is valid,
#           done once it has expired (a 5 s certificate, waited for by its not_after).
# Prints "N passed, M failed"; exits 1 when anything failed. KEEP=1 keeps the temp dir.
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
if [[ -d "$root/.venv/bin" ]]; then
    PATH="$root/.venv/bin:$PATH"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/minibus-rotate.XXXXXX")
passed=0
failed=0

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    python3 "$root/tools/devbao.py" stop "$work/bao" >/dev/null 2>&1 || true
    if [[ "${KEEP:-0}" == 1 || $failed -gt 0 ]]; then echo "test_ca_rotate: files kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
# shellcheck source=tests/vault/tap.sh
source "$root/tests/vault/tap.sh"

python3 "$root/tools/devbao.py" start "$work/bao" >/dev/null || { not_ok "OpenBao dev server starts"; finish; }
# VAULT_ADDR/VAULT_CACERT and BAO_ADDR/BAO_CACERT (https, the launcher's CA)
eval "$(python3 "$root/tools/devbao.py" env "$work/bao")"
export CURL_CA_BUNDLE="$VAULT_CACERT"
anchor="$work/root-ca.pem"
if ! ansible-playbook -i localhost, playbooks/vault_bootstrap.yml -e minibus_vault_trust_anchor_dest="$anchor" \
    -e minibus_vault_ca_cert="$VAULT_CACERT" \
    >"$work/bootstrap.log" 2>&1; then
    not_ok "bootstrap" "$(tail -n 5 "$work/bootstrap.log")"
    finish
fi
rotate() {
    ansible-playbook -i localhost, playbooks/ca_rotate.yml -e minibus_ca_step="$1" -e minibus_vault_ca_cert="$VAULT_CACERT" >"$2" 2>&1
}
msg() { grep -o '"msg": "[^"]*"' "$1" | tail -1 | cut -c9- | tr -d '"'; }
default_issuer() { bao read -format=json pki_int/config/issuers | jq -r .data.default; }
# issue NAME TTL: certificate (and chain) from pki_int/issue/minibus-server, as root
issue() {
    bao write -format=json pki_int/issue/minibus-server common_name="$1" ttl="$2" key_type=ec key_bits=256 >"$work/$1.json" &&
        jq -r .data.certificate "$work/$1.json" >"$work/$1.pem" && jq -r '.data.ca_chain[]' "$work/$1.json" >"$work/$1-chain.pem"
}
issuer_of() { openssl x509 -in "$1" -noout -issuer -nameopt RFC2253 | sed 's/^issuer=//'; }

old_default=$(default_issuer)
if rotate rotate "$work/rotate.log"; then ok "rotate runs"; else not_ok "rotate runs" "$(tail -n 5 "$work/rotate.log")"; fi
new_default=$(default_issuer)
check "rotate made a new default issuer ($old_default -> $new_default)" test -n "$new_default" -a "$new_default" != "$old_default"

# A host not yet renewed holds a certificate of the old intermediate: made here through that
# issuer explicitly, short-lived (45 s) so that retire becomes allowed when it expires.
bao write -format=json "pki_int/issuer/$old_default/issue/minibus-server" common_name=old.minibus.test ttl=45s \
    key_type=ec key_bits=256 >"$work/old.minibus.test.json" 2>"$work/old.err"
jq -r .data.certificate "$work/old.minibus.test.json" >"$work/old.minibus.test.pem"
jq -r '.data.ca_chain[]' "$work/old.minibus.test.json" >"$work/old.minibus.test-chain.pem"
check "a certificate of the old intermediate still verifies against the pinned root (peers not yet renewed)" \
    openssl verify -CAfile "$anchor" -untrusted "$work/old.minibus.test-chain.pem" "$work/old.minibus.test.pem"

issue new.minibus.test 1h
check "a new certificate is signed by the new intermediate ($(issuer_of "$work/new.minibus.test.pem"))" \
    test "$(issuer_of "$work/new.minibus.test.pem")" != "$(issuer_of "$work/old.minibus.test.pem")"
check "the new certificate chains through the new intermediate to the same pinned root" \
    openssl verify -CAfile "$anchor" -untrusted "$work/new.minibus.test-chain.pem" "$work/new.minibus.test.pem"
check "the root CA did not change" test "$(openssl x509 -in "$anchor" -noout -fingerprint -sha256)" == \
    "$(curl -fsS "$VAULT_ADDR/v1/pki/ca/pem" | openssl x509 -noout -fingerprint -sha256)"

if rotate retire "$work/retire1.log"; then
    not_ok "retire is refused while a certificate of the old intermediate is unexpired"
else
    m=$(msg "$work/retire1.log")
    if [[ "$m" == *"Not retired: 1 certificate(s)"*"valid until"* ]]; then ok "retire refused: $m"
    else not_ok "retire refused with one sentence" "$m"; fi
fi
check "the old issuer is still there after the refusal" bao read "pki_int/issuer/$old_default"

# wait for the old certificate's notAfter (no timing is asserted)
na=$(date -d "$(openssl x509 -in "$work/old.minibus.test.pem" -noout -enddate | cut -d= -f2)" +%s)
while [[ $(date +%s) -le $((na + 1)) ]]; do sleep 1; done
if rotate retire "$work/retire2.log"; then ok "retire runs once the old certificate expired"; else not_ok "retire runs once the old certificate expired" "$(msg "$work/retire2.log")"; fi
if bao read "pki_int/issuer/$old_default" >/dev/null 2>&1; then not_ok "the old issuer is gone"; else ok "the old issuer is gone"; fi
check "the new intermediate is still the default" test "$(default_issuer)" == "$new_default"
issue after.minibus.test 1h
check "issuing still works and chains to the pinned root" \
    openssl verify -CAfile "$anchor" -untrusted "$work/after.minibus.test-chain.pem" "$work/after.minibus.test.pem"
if rotate retire "$work/retire3.log" && grep -qE 'changed=0 .*failed=0' "$work/retire3.log"; then
    ok "a second retire has nothing to do (changed=0)"
else
    not_ok "a second retire has nothing to do (changed=0)" "$(grep -E '^localhost' "$work/retire3.log")"
fi
if ansible-playbook -i localhost, playbooks/ca_rotate.yml -e minibus_vault_ca_cert="$VAULT_CACERT" >"$work/nostep.log" 2>&1; then
    not_ok "without minibus_ca_step the playbook refuses"
else
    ok "without minibus_ca_step the playbook refuses: $(msg "$work/nostep.log")"
fi
finish
