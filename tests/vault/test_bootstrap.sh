#!/usr/bin/env bash
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

ok() { passed=$((passed + 1)); echo "ok $((passed + failed)) - $1"; }
not_ok() {
    failed=$((failed + 1))
    echo "not ok $((passed + failed)) - $1"
    shift
    [[ $# -gt 0 ]] && printf '#   %s\n' "$@"
    return 0
}
# check NAME CMD...: CMD's success is the check
check() {
    local name=$1
    shift
    if "$@" >"$work/check.out" 2>&1; then ok "$name"; else not_ok "$name" "$(tail -n 3 "$work/check.out")"; fi
}
finish() {
    echo "$passed passed, $failed failed"
    [[ $failed -eq 0 ]] || exit 1
    exit 0
}

export VAULT_TOKEN=root BAO_TOKEN=root
unset VAULT_NAMESPACE BAO_NAMESPACE
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_STDOUT_CALLBACK=default
export ANSIBLE_LOCALHOST_WARNING=0 ANSIBLE_INVENTORY_UNPARSED_WARNING=0

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
bootstrap() {
    ansible-playbook -i localhost, playbooks/vault_bootstrap.yml -e minibus_vault_ca_cert="$VAULT_CACERT" >"$1" 2>&1
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

# How a broker token is made (documented in playbooks/vault_bootstrap.yml):
broker=$(bao token create -policy=minibus-broker -ttl=1h -format=json | jq -r .auth.client_token)
sid_path=auth/approle/role/minibus-generate-sign-server-keys/secret-id

wrapped=$(as "$broker" write -format=json -wrap-ttl=5m -force "$sid_path" 2>"$work/wrap.err")
creation_path=$(jq -r '.wrap_info.creation_path // empty' <<<"$wrapped")
wrap_token=$(jq -r '.wrap_info.token // empty' <<<"$wrapped")
if [[ "$creation_path" == "$sid_path" ]]; then
    ok "broker mints a wrapped secret id; creation_path=$creation_path"
else
    not_ok "broker mints a wrapped secret id; creation_path=$sid_path" "got: '${creation_path}' $(cat "$work/wrap.err")"
fi

if as "$broker" write -force "$sid_path" >"$work/unwrapped.out" 2>&1; then
    not_ok "broker cannot mint an unwrapped secret id (min_wrapping_ttl)"
else
    ok "broker cannot mint an unwrapped secret id (min_wrapping_ttl)"
fi

lookup_path=$(as "$broker" write -format=json sys/wrapping/lookup token="$wrap_token" 2>&1 | jq -r '.data.creation_path // empty')
if [[ "$lookup_path" == "$sid_path" ]]; then ok "broker can look up the wrapping token"; else not_ok "broker can look up the wrapping token"; fi

if as "$broker" read pki_int/roles/minibus-server >/dev/null 2>&1; then
    not_ok "broker cannot read the PKI role (least privilege)"
else
    ok "broker cannot read the PKI role (least privilege)"
fi

secret_id=$(as "$wrap_token" unwrap -format=json 2>/dev/null | jq -r '.data.secret_id // empty')
login() { bao write -format=json auth/approle/login role_id="$role_id" secret_id="$secret_id" 2>"$work/login.err"; }
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
check "host token mints its own next wrapped secret id" test "$next" == "$sid_path"

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

if openssl x509 -in "$work/host1.pem" -noout -ext extendedKeyUsage 2>/dev/null | grep -q 'TLS Web Server Authentication, TLS Web Client Authentication'; then
    ok "certificate carries serverAuth and clientAuth"
else
    not_ok "certificate carries serverAuth and clientAuth"
fi

# the role caps a too long TTL at max_ttl
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/host2.key" -out "$work/host2.csr" -subj "/CN=host2.minibus.test" >/dev/null 2>&1
as "$host_token" write -format=json pki_int/sign/minibus-server csr=@"$work/host2.csr" \
    common_name=host2.minibus.test ttl=72h 2>/dev/null | jq -r '.data.certificate // empty' >"$work/host2.pem"
# (notBefore is backdated by the role's not_before_duration, 30 s: measure from issuance)
left2=$(($(date -d "$(openssl x509 -in "$work/host2.pem" -noout -enddate 2>/dev/null | cut -d= -f2)" +%s 2>/dev/null || echo 9999999999) - $(date +%s)))
check "a 72h request is capped at max_ttl: expires in ${left2}s <= 25h" test "$left2" -le 90000

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/evil.key" -out "$work/evil.csr" -subj "/CN=evil.example.com" >/dev/null 2>&1
if as "$host_token" write -format=json pki_int/sign/minibus-server csr=@"$work/evil.csr" \
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

check "audit device writes $work/bao/audit.log" test -s "$work/bao/audit.log"

finish
