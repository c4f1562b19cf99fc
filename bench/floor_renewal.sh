#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Benchmark P3 floor: one on-host renewal with the least tooling possible (bash, openssl, curl, jq),
# the same 5 Vault requests as the renewer: AppRole login with the stored secret id, mint the next
# secret id response-wrapped, unwrap it (and store it), sign a CSR for a fresh EC P-256 key,
# revoke-self. No locking, no atomic store, no checks beyond what a shell script would do.
#
#   bench/floor_renewal.sh VAULT_ADDR STATE_DIR COMMON_NAME
#
# STATE_DIR/secret_id holds the current secret id (plain text; rotated by each run).
# Environment: ROLE_ID (minibus/csr), APPROLE (minibus-generate-sign-server-keys),
# PKI_MOUNT (pki_int), PKI_ROLE (minibus-server), TTL (24h).
set -euo pipefail

addr=${1:?usage: floor_renewal.sh VAULT_ADDR STATE_DIR COMMON_NAME}
dir=${2:?usage: floor_renewal.sh VAULT_ADDR STATE_DIR COMMON_NAME}
cn=${3:?usage: floor_renewal.sh VAULT_ADDR STATE_DIR COMMON_NAME}
role_id=${ROLE_ID:-minibus/csr}
approle=${APPROLE:-minibus-generate-sign-server-keys}
mount=${PKI_MOUNT:-pki_int}
pki_role=${PKI_ROLE:-minibus-server}
ttl=${TTL:-24h}
api="${addr%/}/v1"
umask 077

# key and CSR
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/key.new" 2>/dev/null
openssl req -new -key "$dir/key.new" -subj "/CN=$cn" -out "$dir/csr.pem"

# 1. login with the stored secret id
token=$(jq -n --arg r "$role_id" --rawfile s "$dir/secret_id" '{role_id: $r, secret_id: ($s | rtrimstr("\n"))}' |
    curl -sSf -X POST --data @- "$api/auth/approle/login" | jq -er .auth.client_token)

# 2. mint the next secret id, response-wrapped, and check where the wrapping token came from
wrap=$(curl -sSf -X POST -H "X-Vault-Token: $token" -H "X-Vault-Wrap-TTL: 60s" \
    "$api/auth/approle/role/$approle/secret-id" |
    jq -er --arg p "auth/approle/role/$approle/secret-id" 'select(.wrap_info.creation_path == $p) | .wrap_info.token')

# 3. unwrap it and store it before anything else
curl -sSf -X POST -H "X-Vault-Token: $wrap" "$api/sys/wrapping/unwrap" | jq -er .data.secret_id >"$dir/secret_id.new"
mv -f "$dir/secret_id.new" "$dir/secret_id"

# 4. sign the CSR
jq -n --rawfile csr "$dir/csr.pem" --arg cn "$cn" --arg ttl "$ttl" '{csr: $csr, common_name: $cn, ttl: $ttl}' |
    curl -sSf -X POST -H "X-Vault-Token: $token" --data @- "$api/$mount/sign/$pki_role" |
    jq -er .data.certificate >"$dir/cert.new"
mv -f "$dir/key.new" "$dir/key.pem"
mv -f "$dir/cert.new" "$dir/cert.pem"

# 5. revoke the token
curl -sSf -o /dev/null -X POST -H "X-Vault-Token: $token" "$api/auth/token/revoke-self"
