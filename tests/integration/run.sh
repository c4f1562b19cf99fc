#!/usr/bin/env bash
# Integration tests (ansible-test layout) against a real OpenBao dev server.
# Starts the server, configures it with playbooks/vault_bootstrap.yml (as a user would), makes a
# broker token, writes integration_config.yml for the targets, runs them, stops the server.
#   tests/integration/run.sh COLLECTION_COPY_DIR [ansible-test args...]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
coll=${1:?usage: run.sh COLLECTION_COPY_DIR}; shift
state=$(mktemp -d /tmp/minibus-it.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
trap '"$here/tools/devbao.sh" stop "$state" >/dev/null 2>&1 || true; rm -rf "$state"' EXIT

echo "== starting a dev OpenBao on $url"
"$here/tools/devbao.sh" start "$state" "$port"
echo "== configuring it with playbooks/vault_bootstrap.yml"
ANSIBLE_COLLECTIONS_PATH="$(dirname "$(dirname "$(dirname "$coll")")")" \
  ansible-playbook -i localhost, "$here/playbooks/vault_bootstrap.yml" \
  -e minibus_vault_url="$url" -e minibus_vault_token=root -e minibus_vault_allow_ip_sans=true \
  -e minibus_vault_trust_anchor_dest="$state/root-ca.pem" >"$state/bootstrap.log" \
  || { tail -30 "$state/bootstrap.log"; exit 1; }
broker=$(BAO_ADDR="$url" BAO_TOKEN=root bao token create -policy=minibus-broker -ttl=1h -field=token)

umask 077
cat >"$coll/tests/integration/integration_config.yml" <<CFG
---
vault_url: $url
vault_root_token: root
vault_broker_token: $broker
vault_audit_log: $state/audit.log
minibus_approle_name: minibus-generate-sign-server-keys
minibus_role_id: minibus/csr
CFG
echo "== ansible-test integration"
cd "$coll"
ansible-test integration --python 3.11 --color no "$@"
