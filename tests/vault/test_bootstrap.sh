#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# End-to-end test of playbooks/vault_bootstrap.yml against a real OpenBao dev server.
#
# Starts tools/devbao.py (HTTPS, its own CA) on a free port in a temp dir, runs the bootstrap twice (the second run
# must report changed=0 and leave both CAs alone), then walks the AppRole / wrapping / PKI flow
# with the bao CLI and openssl. Prints "N passed, M failed"; exits 1 when anything failed.
# KEEP=1 keeps the temp dir (server logs, audit log, playbook output).
set -uo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root" || exit 1
if [[ -d "$root/.venv/bin" ]]; then
    PATH="$root/.venv/bin:$PATH"
fi
for tool in bao ansible-playbook openssl jq python3; do
    command -v "$tool" >/dev/null || { echo "test_bootstrap: missing tool: $tool" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/minibus-bootstrap.XXXXXX")
passed=0
failed=0

# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
    python3 "$root/tools/devbao.py" stop "$work/bao" >/dev/null 2>&1 || true
    if [[ "${KEEP:-0}" == 1 || $failed -gt 0 ]]; then
        echo "test_bootstrap: files kept in $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# shellcheck source=tests/vault/tap.sh
source "$root/tests/vault/tap.sh"

if ! python3 "$root/tools/devbao.py" start "$work/bao"; then
    not_ok "OpenBao dev server starts"
    finish
fi
# VAULT_ADDR/VAULT_CACERT and BAO_ADDR/BAO_CACERT (https, the launcher's CA); curl trusts that CA only
eval "$(python3 "$root/tools/devbao.py" env "$work/bao")"
export CURL_CA_BUNDLE="$VAULT_CACERT"

# bao as a given token (never the ambient root token)
as() { local t=$1; shift; VAULT_TOKEN="$t" BAO_TOKEN="$t" bao "$@"; }

recap() { grep -E '^localhost +: ' "$1" || echo "(no recap)"; }
anchor="$work/trust/root-ca.pem"
bootstrap() {
    local log=$1
    shift
    ansible-playbook -i localhost, playbooks/vault_bootstrap.yml -e minibus_vault_ca_cert="$VAULT_CACERT" \
        -e minibus_vault_trust_anchor_dest="$anchor" "$@" >"$log" 2>&1
}

# ------------------------------------------------------------------ bootstrap, twice
t0=$SECONDS
if bootstrap "$work/run1.log" && recap "$work/run1.log" | grep -qE 'failed=0'; then
    ok "first bootstrap run succeeds ($((SECONDS - t0)) s): $(recap "$work/run1.log" | tr -s ' ' | cut -d' ' -f3-5)"
else
    not_ok "first bootstrap run succeeds" "$(tail -n 15 "$work/run1.log")"
    finish
fi
root_ca1=$(curl -fsS "$VAULT_ADDR/v1/pki/ca/pem")
int_ca1=$(curl -fsS "$VAULT_ADDR/v1/pki_int/ca/pem")

t0=$SECONDS
if bootstrap "$work/run2.log" && recap "$work/run2.log" | grep -qE 'changed=0 .*failed=0'; then
    ok "second bootstrap run is idempotent: changed=0 ($((SECONDS - t0)) s)"
else
    not_ok "second bootstrap run is idempotent: changed=0" "$(recap "$work/run2.log")" \
        "$(grep -E '^changed:' "$work/run2.log" -B2 | grep TASK | head -5)"
fi
root_ca2=$(curl -fsS "$VAULT_ADDR/v1/pki/ca/pem")
int_ca2=$(curl -fsS "$VAULT_ADDR/v1/pki_int/ca/pem")
if [[ -n "$root_ca1" && "$root_ca1" == "$root_ca2" && -n "$int_ca1" && "$int_ca1" == "$int_ca2" ]]; then
    ok "root and intermediate CA unchanged by the second run"
else
    not_ok "root and intermediate CA unchanged by the second run"
fi

# drift is repaired (and only the drifted object is rewritten)
bao write -force pki_int/roles/minibus-server ttl=1h max_ttl=2h allowed_domains=x.test key_type=ec >/dev/null 2>&1
if bootstrap "$work/run3.log" && recap "$work/run3.log" | grep -qE 'changed=1 .*failed=0' &&
    [[ "$(bao read -format=json pki_int/roles/minibus-server | jq -c '[.data.ttl, .data.max_ttl, .data.key_type]')" == '[86400,90000,"any"]' ]]; then
    ok "a drifted PKI role is rewritten (changed=1)"
else
    not_ok "a drifted PKI role is rewritten (changed=1)" "$(recap "$work/run3.log")"
fi

# ------------------------------------------------------------------ AppRole and wrapping
role_id=$(bao read -format=json auth/approle/role/minibus-generate-sign-server-keys/role-id | jq -r .data.role_id)
if [[ "$role_id" == "minibus/csr" ]]; then ok "AppRole role id is minibus/csr"; else not_ok "AppRole role id is minibus/csr" "got: $role_id"; fi
log_role_id=$(bao read -format=json auth/approle/role/minibus-log-server/role-id | jq -r .data.role_id)
check "log server AppRole minibus-log-server has role id minibus/csr-log-server" test "$log_role_id" == "minibus/csr-log-server"
boot_ids=$(for r in minibus-generate-sign-server-keys minibus-log-server; do
    bao read -format=json "auth/minibus-bootstrap/role/$r/role-id" | jq -r .data.role_id; done | tr '\n' ' ')
check "bootstrap mount minibus-bootstrap holds the same AppRole roles and role ids: $boot_ids" \
    test "$boot_ids" == "minibus/csr minibus/csr-log-server "

# How a broker token is made (documented in playbooks/vault_bootstrap.yml):
broker=$(bao token create -policy=minibus-broker -ttl=1h -format=json | jq -r .auth.client_token)
# renewal mount (host tokens mint their next secret id here) and bootstrap mount (only the broker)
sid_path=auth/approle/role/minibus-generate-sign-server-keys/secret-id
log_sid_path=auth/approle/role/minibus-log-server/secret-id
boot_sid_path=auth/minibus-bootstrap/role/minibus-generate-sign-server-keys/secret-id

# new_host_token [APPROLE ROLE_ID]: what one host holds after its bootstrap: the broker mints a
# wrapped secret id on the bootstrap mount, the host unwraps it and logs in there. Prints the host
# token ("none" on failure).
new_host_token() {
    local approle=${1:-minibus-generate-sign-server-keys} rid=${2:-minibus/csr} w sid
    w=$(as "$broker" write -format=json -wrap-ttl=5m -force "auth/minibus-bootstrap/role/$approle/secret-id" 2>/dev/null |
        jq -r '.wrap_info.token // empty')
    sid=$(as "$w" unwrap -format=json 2>/dev/null | jq -r '.data.secret_id // empty')
    bao write -format=json auth/minibus-bootstrap/login role_id="$rid" secret_id="$sid" 2>/dev/null |
        jq -r '.auth.client_token // "none"'
}

wrapped=$(as "$broker" write -format=json -wrap-ttl=5m -force "$boot_sid_path" 2>"$work/wrap.err")
creation_path=$(jq -r '.wrap_info.creation_path // empty' <<<"$wrapped")
wrap_token=$(jq -r '.wrap_info.token // empty' <<<"$wrapped")
if [[ "$creation_path" == "$boot_sid_path" ]]; then
    ok "broker mints a wrapped secret id on the bootstrap mount; creation_path=$creation_path"
else
    not_ok "broker mints a wrapped secret id; creation_path=$boot_sid_path" "got: '${creation_path}' $(cat "$work/wrap.err")"
fi
if as "$broker" write -format=json -wrap-ttl=5m -force "$sid_path" >"$work/broker-renewal.out" 2>&1; then
    not_ok "broker cannot mint on the renewal mount ($sid_path)"
else
    ok "broker cannot mint on the renewal mount ($sid_path)"
fi

if as "$broker" write -force "$boot_sid_path" >"$work/unwrapped.out" 2>&1; then
    not_ok "broker cannot mint an unwrapped secret id (min_wrapping_ttl)"
else
    ok "broker cannot mint an unwrapped secret id (min_wrapping_ttl)"
fi

lookup_path=$(as "$broker" write -format=json sys/wrapping/lookup token="$wrap_token" 2>&1 | jq -r '.data.creation_path // empty')
if [[ "$lookup_path" == "$boot_sid_path" ]]; then ok "broker can look up the wrapping token"; else not_ok "broker can look up the wrapping token"; fi

if as "$broker" read pki_int/roles/minibus-server >/dev/null 2>&1; then
    not_ok "broker cannot read the PKI role (least privilege)"
else
    ok "broker cannot read the PKI role (least privilege)"
fi

secret_id=$(as "$wrap_token" unwrap -format=json 2>/dev/null | jq -r '.data.secret_id // empty')
login() { bao write -format=json auth/minibus-bootstrap/login role_id="$role_id" secret_id="$secret_id" 2>"$work/login.err"; }
host_token=$(login | jq -r '.auth.client_token // empty')
if [[ -n "$secret_id" && -n "$host_token" ]]; then
    ok "AppRole login with the unwrapped secret id works"
else
    not_ok "AppRole login with the unwrapped secret id works" "$(cat "$work/login.err")"
    host_token=none
fi
if login >/dev/null; then
    not_ok "second login with the same secret id fails (single use)"
else
    ok "second login with the same secret id fails: $(grep -o 'invalid role or secret ID' "$work/login.err" | head -1)"
fi

policies=$(as "$host_token" token lookup -format=json 2>/dev/null | jq -c '.data.policies')
check "host token carries policies [default, minibus-host]: $policies" test "$policies" == '["default","minibus-host"]'

next=$(as "$host_token" write -format=json -wrap-ttl=5m -force "$sid_path" 2>&1 | jq -r '.wrap_info.creation_path // empty')
check "host token (bootstrap login) mints its own next wrapped secret id on the renewal mount" test "$next" == "$sid_path"
# A host token must not mint where hosts accept a bootstrap secret id (a substitute would pass);
# a token of its own, since refused requests spend the 5 uses too.
host_token_b=$(new_host_token)
if as "$host_token_b" write -format=json -wrap-ttl=5m -force "$boot_sid_path" >"$work/host-boot.out" 2>&1; then
    not_ok "host token cannot mint on the bootstrap mount ($boot_sid_path)"
else
    ok "host token cannot mint on the bootstrap mount: $(grep -o 'permission denied' "$work/host-boot.out" | head -1)"
fi

if as "$host_token" list auth/approle/role >/dev/null 2>&1; then
    not_ok "host token cannot list AppRole roles (least privilege)"
else
    ok "host token cannot list AppRole roles (least privilege)"
fi

# ------------------------------------------------------------------ sign a CSR
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/host1.key" -out "$work/host1.csr" \
    -subj "/CN=host1.minibus.test/ST=foo/L=bar" >/dev/null 2>&1
signed=$(as "$host_token" write -format=json pki_int/sign/minibus-server \
    csr=@"$work/host1.csr" common_name=host1.minibus.test ttl=24h 2>"$work/sign.err")
jq -r '.data.certificate // empty' <<<"$signed" >"$work/host1.pem"
if [[ -s "$work/host1.pem" ]]; then
    ok "host token signs a CSR at pki_int/sign/minibus-server"
else
    not_ok "host token signs a CSR at pki_int/sign/minibus-server" "$(cat "$work/sign.err")"
fi

subject=$(openssl x509 -in "$work/host1.pem" -noout -subject -nameopt compat 2>/dev/null)
if [[ "$subject" == *"/ST=rengthining/L=iberty/"* && "$subject" == *"CN=host1.minibus.test"* && "$subject" != *"ST=foo"* ]]; then
    ok "subject has /ST=rengthining/L=iberty/ from the role: $subject"
else
    not_ok "subject has /ST=rengthining/L=iberty/ from the role" "got: $subject"
fi

lifetime() {
    local nb na
    nb=$(openssl x509 -in "$1" -noout -startdate | cut -d= -f2)
    na=$(openssl x509 -in "$1" -noout -enddate | cut -d= -f2)
    echo $(($(date -d "$na" +%s) - $(date -d "$nb" +%s)))
}
life=$(lifetime "$work/host1.pem" 2>/dev/null || echo 999999)
# notBefore is backdated 30 s (not_before_duration), so the 24h certificate spans 86430 s
check "certificate lifetime ${life}s <= 25h" test "$life" -le 90000

eku=$(openssl x509 -in "$work/host1.pem" -noout -ext extendedKeyUsage 2>/dev/null | tail -n +2 | tr -d ' ')
check "a client's certificate carries clientAuth only: $eku" test "$eku" == "TLSWebClientAuthentication"

# the role caps a too long TTL at max_ttl
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/host2.key" -out "$work/host2.csr" -subj "/CN=host2.minibus.test" >/dev/null 2>&1
# (a fresh token: one host token is good for minibus_vault_token_num_uses requests)
host_token2=$(new_host_token)
as "$host_token2" write -format=json pki_int/sign/minibus-server csr=@"$work/host2.csr" \
    common_name=host2.minibus.test ttl=72h 2>/dev/null | jq -r '.data.certificate // empty' >"$work/host2.pem"
# (notBefore is backdated by the role's not_before_duration, 30 s: measure from issuance)
left2=$(($(date -d "$(openssl x509 -in "$work/host2.pem" -noout -enddate 2>/dev/null | cut -d= -f2)" +%s 2>/dev/null || echo 9999999999) - $(date +%s)))
check "a 72h request is capped at max_ttl: expires in ${left2}s <= 25h" test "$left2" -le 90000

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/evil.key" -out "$work/evil.csr" -subj "/CN=evil.example.com" >/dev/null 2>&1
if as "$host_token2" write -format=json pki_int/sign/minibus-server csr=@"$work/evil.csr" \
    common_name=evil.example.com >/dev/null 2>&1; then
    not_ok "a name outside allowed_domains is refused"
else
    ok "a name outside allowed_domains is refused"
fi

# chain: leaf <- pki_int <- pki root
curl -fsS "$VAULT_ADDR/v1/pki/ca/pem" >"$work/root.pem"
jq -r '.data.ca_chain[]' <<<"$signed" >"$work/chain.pem" 2>/dev/null
check "CA chain verifies: $(openssl verify -CAfile "$work/root.pem" -untrusted "$work/chain.pem" "$work/host1.pem" 2>&1 | tr '\n' ' ')" \
    openssl verify -CAfile "$work/root.pem" -untrusted "$work/chain.pem" "$work/host1.pem"
root_subject=$(openssl x509 -in "$work/root.pem" -noout -subject -nameopt compat 2>/dev/null)
check "root CA subject is CN=minibus Root CA ($root_subject)" test "$root_subject" == "subject=/CN=minibus Root CA"

check "host token revokes itself" as "$host_token" token revoke -self
if as "$host_token" token lookup >/dev/null 2>&1; then
    not_ok "revoked host token is gone"
else
    ok "revoked host token is gone"
fi

# ------------------------------------------------------------------ trust anchor
check "the trust anchor file is the root CA certificate (pki/ca/pem)" \
    test "$(openssl x509 -in "$anchor" -noout -fingerprint -sha256 2>&1)" == "$(openssl x509 -in "$work/root.pem" -noout -fingerprint -sha256)"
check "the trust anchor file is world-readable, not writable: $(stat -c %a "$anchor" 2>&1)" test "$(stat -c %a "$anchor" 2>&1)" == 644

# ------------------------------------------------------------------ attacks with one host's credentials
# Each must be refused. reason FILE: Vault's first error line, for the log.
reason() {
    grep -v -E 'error occurred|^URL:|^Code:|^Error (making|writing)' "$1" | grep -m1 -iE 'denied|not allowed|unauthorized|wrap|invalid|error|purpose|^\s*\* ' |
        sed -E 's/^\s*\* //' | cut -c1-120
}
# refused NAME CMD...: CMD must fail
refused() {
    local name=$1
    shift
    if "$@" >"$work/attack.out" 2>&1; then
        not_ok "refused: $name" "$(head -c 300 "$work/attack.out")"
    else
        ok "refused: $name ($(reason "$work/attack.out"))"
    fi
}
t=$(new_host_token)
[[ "$t" != none ]] || not_ok "a host token for the attacks"
# five requests with $t (minibus_vault_token_num_uses = 5)
refused "a host mints an unwrapped secret id" as "$t" write -format=json -force "$sid_path"
refused "a host gets a certificate for localhost" \
    as "$t" write -format=json pki_int/issue/minibus-server common_name=localhost key_type=ec key_bits=256
refused "a host gets a certificate with the IP SAN 8.8.8.8" \
    as "$t" write -format=json pki_int/issue/minibus-server common_name=host1.minibus.test ip_sans=8.8.8.8 key_type=ec key_bits=256
refused "a host gets a wildcard certificate *.minibus.test" \
    as "$t" write -format=json pki_int/issue/minibus-server common_name='*.minibus.test' key_type=ec key_bits=256
refused "a client signs at the log server's PKI role" \
    as "$t" write -format=json pki_int/issue/minibus-log-server common_name=server.minibus.test key_type=ec key_bits=256
refused "the host token is spent after 5 requests (token_num_uses)" as "$t" token lookup

t=$(new_host_token)
info=$(bao token lookup -format=json "$t" | jq -c '[.data.num_uses, .data.ttl <= 300, .data.explicit_max_ttl]')
check "a fresh host token: 5 uses, lives <= 5 min: $info" test "$info" == '[5,true,0]'
# shellcheck disable=SC2016  # $1 is expanded by the inner bash
refused "a host token renews itself beyond 5 min (token_max_ttl)" \
    bash -c 'VAULT_TOKEN="$1" BAO_TOKEN="$1" bao token renew -format=json -increment=1h | jq -e ".auth.lease_duration > 300"' _ "$t"
refused "a client mints a secret id for the log server's AppRole" as "$t" write -wrap-ttl=1m -force "$log_sid_path"
# The client may get the log server's NAME, but only with clientAuth: a client checks the
# server for serverAuth (StreamDriver.CheckExtendedKeyPurpose), as openssl -purpose sslserver does.
as "$t" write -format=json pki_int/issue/minibus-server common_name=server.minibus.test key_type=ec key_bits=256 \
    >"$work/fake-server.json" 2>&1
jq -r '.data.certificate // empty' "$work/fake-server.json" >"$work/fake-server.pem"
jq -r '.data.ca_chain[]?' "$work/fake-server.json" >"$work/fake-server-chain.pem"
refused "a client's certificate for the log server's name passes a client's server check (purpose sslserver)" \
    openssl verify -purpose sslserver -CAfile "$work/root.pem" -untrusted "$work/fake-server-chain.pem" "$work/fake-server.pem"
refused "a host gets a certificate for the bare domain minibus.test" \
    as "$t" write -format=json pki_int/issue/minibus-server common_name=minibus.test key_type=ec key_bits=256

# the log server's own credentials: serverAuth only, and only at its own PKI role
ls_token=$(new_host_token minibus-log-server minibus/csr-log-server)
as "$ls_token" write -format=json pki_int/issue/minibus-log-server common_name=server.minibus.test key_type=ec key_bits=256 \
    2>"$work/ls.err" | jq -r '.data.certificate // empty' >"$work/log-server.pem"
check "the log server's certificate passes purpose sslserver (what clients check)" \
    openssl verify -purpose sslserver -CAfile "$work/root.pem" -untrusted "$work/fake-server-chain.pem" "$work/log-server.pem"
refused "the log server's certificate passes purpose sslclient (it is not a client)" \
    openssl verify -purpose sslclient -CAfile "$work/root.pem" -untrusted "$work/fake-server-chain.pem" "$work/log-server.pem"
refused "the log server's token signs at the clients' PKI role" \
    as "$ls_token" write -format=json pki_int/issue/minibus-server common_name=c.minibus.test key_type=ec key_bits=256

# Known limit of the default (shared) identity, printed and not counted (docs/design.md "Another
# host's name"); the opt-in per-host identities below refuse it.
if as "$t" write -format=json pki_int/issue/minibus-server common_name=host9.minibus.test key_type=ec key_bits=256 >/dev/null 2>&1; then
    echo "# KNOWN LIMIT (shared identity): one client's credentials got a certificate for another client's name (host9.minibus.test)"
fi

# ------------------------------------------------------------------ the broker lookup: metadata and bound secret ids
# A collection tree for the lookup and the site.yml test: the real plugins and playbooks, and a
# stand-in minibus_certs role that does only what the real one does with the controller's
# credentials: mint a wrapped secret id for minibus_certs_approle_name.
coll="$work/coll/ansible_collections/minibus/pki"
mkdir -p "$coll/roles/minibus_certs/tasks" "$coll/roles/minibus_certs/defaults" "$work/library"
for f in plugins playbooks meta galaxy.yml roles/vault_pki; do ln -s "$root/$f" "$coll/$f"; done
cat >"$coll/roles/minibus_certs/defaults/main.yml" <<'YML'
---
minibus_certs_approle_name: minibus-generate-sign-server-keys
minibus_certs_pki_role: minibus-server
minibus_certs_role_id: minibus/csr
YML
cat >"$coll/roles/minibus_certs/tasks/main.yml" <<'YML'
---
- name: Mint as the role does
  ansible.builtin.set_fact:
    __w: "{{ lookup('minibus.pki.vault_secret_id', minibus_certs_approle_name, metadata={'host': inventory_hostname}) }}"
- name: Where the secret id was minted
  ansible.builtin.uri:
    url: "{{ lookup('ansible.builtin.env', 'VAULT_ADDR') }}/v1/sys/wrapping/lookup"
    ca_path: "{{ lookup('ansible.builtin.env', 'VAULT_CACERT') }}"
    method: POST
    body_format: json
    body: {token: "{{ __w }}"}
  register: __l
- name: Report
  ansible.builtin.debug:
    msg: "minted-at={{ __l.json.data.creation_path }} pki_role={{ minibus_certs_pki_role }} role_id={{ minibus_certs_role_id }}"
YML
export ANSIBLE_COLLECTIONS_PATH="$work/coll"
# mint_lookup OPTIONS: a wrapping token from the lookup, as the broker (OPTIONS: lookup keywords)
mint_lookup() {
    VAULT_TOKEN="$broker" ansible localhost -i localhost, -o -m ansible.builtin.debug \
        -a "msg={{ lookup('minibus.pki.vault_secret_id', 'minibus-generate-sign-server-keys', $1) }}" 2>"$work/mint.err" |
        grep -o '"msg": *"[^"]*"' | sed 's/.*: *"//; s/"$//'
}
# login_with WRAPPING_TOKEN: unwrap, log in from 127.0.0.1; prints the secret id accessor on success
login_with() {
    local u sid acc
    u=$(as "$1" unwrap -format=json 2>/dev/null)
    sid=$(jq -r '.data.secret_id // empty' <<<"$u")
    acc=$(jq -r '.data.secret_id_accessor // empty' <<<"$u")
    [[ -n "$sid" ]] || return 1
    bao write -format=json auth/minibus-bootstrap/login role_id=minibus/csr secret_id="$sid" >"$work/login2.out" 2>&1 || return 1
    echo "$acc"
}
w=$(mint_lookup "metadata={'host': 'host7.minibus.test'}")
# look up the metadata before logging in (a single-use secret id is gone after its login)
u=$(as "$w" unwrap -format=json 2>/dev/null)
acc=$(jq -r '.data.secret_id_accessor // empty' <<<"$u")
meta=$(bao write -format=json auth/minibus-bootstrap/role/minibus-generate-sign-server-keys/secret-id-accessor/lookup \
    secret_id_accessor="$acc" 2>/dev/null | jq -c '.data.metadata')
check "a secret id minted by the lookup carries metadata naming the host: $meta" test "$meta" == '{"host":"host7.minibus.test"}'
# docs/design.md: live secret-id accessors, one line per accessor with the host it was minted for
live=$(bao list -format=json auth/minibus-bootstrap/role/minibus-generate-sign-server-keys/secret-id | jq -r '.[]' |
    while read -r a; do
        bao write -format=json auth/minibus-bootstrap/role/minibus-generate-sign-server-keys/secret-id-accessor/lookup \
            secret_id_accessor="$a" | jq -r '.data.metadata.host // "-"'
    done | sort | uniq -c | tr -s ' ' | tr '\n' ';')
check "the live accessors listing names the host: $live" grep -q 'host7.minibus.test' <<<"$live"
# the audit log names the host at login (auth.metadata is not HMAC'd, unlike request data)
bao write -format=json auth/minibus-bootstrap/login role_id=minibus/csr secret_id="$(jq -r '.data.secret_id' <<<"$u")" >/dev/null 2>&1
check "the audit log names the host of a login: $(grep -c 'host7.minibus.test' "$work/bao/audit.log") line(s)" \
    grep -q '"host":"host7.minibus.test"' "$work/bao/audit.log"

w=$(mint_lookup "cidr_list=['10.0.0.0/8']")
if [[ -n "$w" ]] && ! login_with "$w" >/dev/null; then
    ok "refused: a secret id bound to 10.0.0.0/8 (lookup cidr_list) used from 127.0.0.1 ($(reason "$work/login2.out"))"
else
    not_ok "refused: a secret id bound to 10.0.0.0/8 (lookup cidr_list) used from 127.0.0.1" "$(cat "$work/mint.err")"
fi
w=$(mint_lookup "cidr_list=['127.0.0.0/8']")
check "a secret id bound to 127.0.0.0/8 logs in from 127.0.0.1" login_with "$w"

# the AppRole role's bindings: secret ids from 127.0.0.0/8 only, tokens from 10.0.0.0/8 only
if bootstrap "$work/run-cidr.log" -e '{"minibus_vault_secret_id_bound_cidrs": ["127.0.0.0/8"], "minibus_vault_token_bound_cidrs": ["10.0.0.0/8"]}' &&
    recap "$work/run-cidr.log" | grep -qE 'changed=[1-9].*failed=0'; then
    ok "bootstrap binds the AppRole roles: secret_id_bound_cidrs, token_bound_cidrs"
else
    not_ok "bootstrap binds the AppRole roles: secret_id_bound_cidrs, token_bound_cidrs" "$(tail -n 5 "$work/run-cidr.log")"
fi
t=$(new_host_token)
if [[ "$t" != none ]]; then
    ok "login from 127.0.0.1 with secret_id_bound_cidrs 127.0.0.0/8 works"
    refused "a token bound to 10.0.0.0/8 (token_bound_cidrs) used from 127.0.0.1" \
        as "$t" write -format=json pki_int/issue/minibus-server common_name=host1.minibus.test key_type=ec key_bits=256
else
    not_ok "login from 127.0.0.1 with secret_id_bound_cidrs 127.0.0.0/8 works"
fi
bootstrap "$work/run-uncidr.log" || not_ok "bootstrap back to unbound AppRole roles" "$(tail -n 5 "$work/run-uncidr.log")"

# ------------------------------------------------------------------ the AppRole name comes from the controller
# A compromised host's fact gathering can return any fact: here it claims to be a log server.
cat >"$work/library/minibus_evil_facts.py" <<'PY'
#!/usr/bin/python
import json
print(json.dumps({"ansible_facts": {
    "minibus_certs_approle_name": "minibus-log-server", "minibus_certs_pki_role": "minibus-log-server",
    "minibus_certs_role_id": "minibus/csr-log-server", "minibus_site_client_approle_name": "minibus-log-server"}}))
PY
printf '[rsyslog_clients]\nevil.minibus.test ansible_connection=local ansible_python_interpreter=%s\n' \
    "$(command -v python3)" >"$work/site-inventory.ini"
cat >"$work/direct.yml" <<'YML'
- name: The role without site.yml's role parameters (control)
  hosts: rsyslog_clients
  gather_facts: true
  roles:
    - role: minibus.pki.minibus_certs
YML
site_run() {
    local pb=$1 log=$2
    shift 2
    VAULT_TOKEN="$broker" ANSIBLE_LIBRARY="$work/library" ANSIBLE_FACTS_MODULES=minibus_evil_facts \
        ansible-playbook -i "$work/site-inventory.ini" -e minibus_site_become=false \
        -e minibus_site_trust_anchor_file="$anchor" "$@" "$pb" >"$log" 2>&1
    grep -o 'minted-at=[^"]*' "$log" | head -1
}
control=$(site_run "$work/direct.yml" "$work/direct.log")
check "control: without site.yml, the injected fact picks the AppRole: $control" \
    grep -q 'minted-at=auth/minibus-bootstrap/role/minibus-log-server/secret-id' <<<"$control"
viasite=$(site_run "$coll/playbooks/site.yml" "$work/site.log")
check "site.yml: a host fact minibus_certs_approle_name=minibus-log-server changes nothing: $viasite" \
    test "$viasite" == "minted-at=auth/minibus-bootstrap/role/minibus-generate-sign-server-keys/secret-id pki_role=minibus-server role_id=minibus/csr"
export ANSIBLE_COLLECTIONS_PATH="$work/repo-coll"


# ------------------------------------------------------------------ opt-in per-host identities
per_host='{"minibus_vault_per_host": {"host1.minibus.test": {"names": ["host1.minibus.test", "alias1.minibus.test"]},
  "host2.minibus.test": {}, "evil.minibus.test": {}, "logs.minibus.test": {"server": true}}}'
if bootstrap "$work/run-per-host.log" -e "$per_host" && bootstrap "$work/run-per-host2.log" -e "$per_host" &&
    recap "$work/run-per-host2.log" | grep -qE 'changed=0 .*failed=0'; then
    ok "bootstrap with minibus_vault_per_host (4 hosts), idempotent"
else
    not_ok "bootstrap with minibus_vault_per_host (4 hosts), idempotent" "$(recap "$work/run-per-host.log")" "$(recap "$work/run-per-host2.log")"
fi
h1=$(new_host_token minibus-host-host1.minibus.test minibus/csr/host1.minibus.test)
check "per host: host1 gets its own names (host1, alias1) at its own PKI role" \
    as "$h1" write -format=json pki_int/issue/minibus-host-host1.minibus.test common_name=host1.minibus.test \
    alt_names=alias1.minibus.test key_type=ec key_bits=256
refused "per host: with host1's credentials, a certificate for another host's name (host2.minibus.test)" \
    as "$h1" write -format=json pki_int/issue/minibus-host-host1.minibus.test common_name=host2.minibus.test key_type=ec key_bits=256
refused "per host: with host1's credentials, at host2's PKI role" \
    as "$h1" write -format=json pki_int/issue/minibus-host-host2.minibus.test common_name=host2.minibus.test key_type=ec key_bits=256
refused "per host: with host1's credentials, a subdomain x.host1.minibus.test" \
    as "$h1" write -format=json pki_int/issue/minibus-host-host1.minibus.test common_name=x.host1.minibus.test key_type=ec key_bits=256
refused "per host: with host1's credentials, a secret id for host2" as "$h1" write -wrap-ttl=1m -force \
    auth/approle/role/minibus-host-host2.minibus.test/secret-id
h1=$(new_host_token minibus-host-host1.minibus.test minibus/csr/host1.minibus.test)
refused "per host: host1 (a client) gets the log server's name at the log server's PKI role" \
    as "$h1" write -format=json pki_int/issue/minibus-host-logs.minibus.test common_name=logs.minibus.test key_type=ec key_bits=256
as "$h1" write -format=json pki_int/issue/minibus-host-host1.minibus.test common_name=host1.minibus.test key_type=ec key_bits=256 \
    2>/dev/null | jq -r '.data.certificate // empty' >"$work/per-host1.pem"
refused "per host: a client's certificate passes purpose sslserver" \
    openssl verify -purpose sslserver -CAfile "$work/root.pem" -untrusted "$work/fake-server-chain.pem" "$work/per-host1.pem"
export ANSIBLE_COLLECTIONS_PATH="$work/coll"
perhost=$(site_run "$coll/playbooks/site.yml" "$work/site-per-host.log" -e minibus_site_per_host_identity=true)
check "site.yml per host: the controller mints for the inventory name, whatever the facts say: $perhost" test "$perhost" == \
    "minted-at=auth/minibus-bootstrap/role/minibus-host-evil.minibus.test/secret-id pki_role=minibus-host-evil.minibus.test role_id=minibus/csr/evil.minibus.test"
export ANSIBLE_COLLECTIONS_PATH="$work/repo-coll"

# ------------------------------------------------------------------ the auditor: lists and reads only
auditor=$(bao token create -policy=minibus-auditor -ttl=10m -format=json | jq -r .auth.client_token)
check "auditor lists the live secret-id accessors on both mounts" \
    as "$auditor" list auth/approle/role/minibus-generate-sign-server-keys/secret-id
check "auditor lists the issued certificates" as "$auditor" list pki_int/certs
refused "the auditor mints a secret id (bootstrap mount)" as "$auditor" write -wrap-ttl=1m -force "$boot_sid_path"
refused "the auditor mints a secret id (renewal mount)" as "$auditor" write -wrap-ttl=1m -force "$sid_path"
refused "the auditor destroys a secret id" as "$auditor" write \
    auth/approle/role/minibus-generate-sign-server-keys/secret-id-accessor/destroy secret_id_accessor=x
refused "the auditor signs a certificate" as "$auditor" write -format=json pki_int/issue/minibus-server \
    common_name=host1.minibus.test key_type=ec key_bits=256

check "audit device writes $work/bao/audit.log" test -s "$work/bao/audit.log"

# ------------------------------------------------------------------ intermediate rotation (own dev server)
if "$root/tests/vault/test_ca_rotate.sh" >"$work/rotate.out" 2>&1; then
    ok "tests/vault/test_ca_rotate.sh: $(tail -n 1 "$work/rotate.out")"
else
    not_ok "tests/vault/test_ca_rotate.sh: $(tail -n 1 "$work/rotate.out")" "$(grep -A2 '^not ok' "$work/rotate.out")"
fi
sed 's/^/#   rotate: /' "$work/rotate.out"

finish
