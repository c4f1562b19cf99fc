#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Integration tests (ansible-test layout) against a real OpenBao dev server over HTTPS.
# Starts the server (tools/devbao.py: its own CA), configures it with playbooks/vault_bootstrap.yml
# (as a user would, trusting that CA), makes a broker token, writes integration_config.yml for the
# targets (vault_url, vault_ca_cert, ...), runs them, stops the server.
#   tests/integration/run.sh COLLECTION_COPY_DIR [ansible-test args...]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
coll=${1:?usage: run.sh COLLECTION_COPY_DIR}; shift
state=$(mktemp -d /tmp/minibus-it.XXXXXX)
trap 'python3 "$here/tools/devbao.py" stop "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT

echo "== starting a dev OpenBao over HTTPS"
python3 "$here/tools/devbao.py" start "$state"
eval "$(python3 "$here/tools/devbao.py" env "$state")"   # VAULT_ADDR/VAULT_CACERT (+ BAO_*)
echo "== configuring it with playbooks/vault_bootstrap.yml"
ANSIBLE_COLLECTIONS_PATH="$(dirname "$(dirname "$(dirname "$coll")")")" \
  ansible-playbook -i localhost, "$here/playbooks/vault_bootstrap.yml" \
  -e minibus_vault_url="$VAULT_ADDR" -e minibus_vault_ca_cert="$VAULT_CACERT" -e minibus_vault_token=root \
  -e minibus_vault_allow_ip_sans=true -e minibus_vault_trust_anchor_dest="$state/root-ca.pem" \
  >"$state/bootstrap.log" || { tail -30 "$state/bootstrap.log"; exit 1; }
broker=$(BAO_TOKEN=root bao token create -policy=minibus-broker -ttl=1h -field=token)

umask 077
cat >"$coll/tests/integration/integration_config.yml" <<CFG
---
vault_url: $VAULT_ADDR
vault_ca_cert: $VAULT_CACERT
vault_root_token: root
vault_broker_token: $broker
vault_audit_log: $state/audit.log
minibus_approle_name: minibus-generate-sign-server-keys
minibus_role_id: minibus/csr
CFG
echo "== ansible-test integration"
cd "$coll"
ansible-test integration --python 3.11 --color no "$@"
