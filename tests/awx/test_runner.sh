#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# minibus.pki.site run the way AWX runs it, against a real lab (tools/demo/lab.sh):
#   OpenBao dev server over HTTPS (tools/devbao.py) + rsyslog server + rsyslog client in systemd containers (podman,
#   network minibus-demo, containers minibus-awx-*, 198.18.1.20-22), the collection installed
#   offline from the tarball, ansible-runner on a private_data_dir whose env/envvars and
#   env/extravars are rendered from awx/credential_type.yml's injectors. VAULT_TOKEN there is
#   a broker token (policy minibus-broker), not root.
# Asserts: runner status successful; second run changes nothing; each host's certificate has
# CN = its FQDN and ST=rengthining, L=iberty; a logger line on the client reaches the server's
# remote log over mutual TLS; a client whose secret id was spent behind its back is brought back by
# the scheduled minibus.pki.recover alone, which leaves the server unchanged.
# Usage: tests/awx/test_runner.sh dist/minibus-pki-<version>.tar.gz   (make test-awx)
#   KEEP_LAB=1  leave the lab running afterwards (tools/demo/lab.sh down with the same LAB)
set -euo pipefail
tarball="$(readlink -f "${1:?usage: $0 TARBALL}")"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export LAB="${LAB:-minibus-awx}" LAB_IP_BASE="${LAB_IP_BASE:-20}"
# Raw audit log and -vvvv job output: the leak scan at the end needs both.
export LAB_AUDIT_RAW=1 LAB_VERBOSITY=4
# shellcheck source=tools/demo/lab-checks.sh
. "$repo/tools/demo/lab-checks.sh"
t0=$SECONDS
lab_checks_start test-awx "$tarball" "image, network, containers, OpenBao, bootstrap from the tarball"

# The token the credential injects is the broker token, with nothing but minibus-broker.
vault_ca="$("$lab" vault-ca)"
policies="$(curl -fsS --cacert "$vault_ca" -H "X-Vault-Token: $(cat "$LAB_DIR/broker-token")" \
  "$("$lab" vault-url)/v1/auth/token/lookup-self" | jq -r '.data.policies | sort | join(",")')"
if [ "$policies" = "default,minibus-broker" ]; then ok "injected VAULT_TOKEN has policies $policies (not root)"
else ko "broker token policies: $policies"; fi

# stats of a runner job from its artifacts: "<host>=<changed> ..." and failures
stats() {
  python3 - "$LAB_DIR/runner/artifacts/$1" <<'PY'
import glob, json, os, sys
for f in glob.glob(os.path.join(sys.argv[1], "job_events", "*.json")):
    ev = json.load(open(f))
    if ev.get("event") == "playbook_on_stats":
        d = ev["event_data"]
        hosts = sorted(set(d.get("ok", {})) | set(d.get("changed", {})))
        print(" ".join("%s=%d" % (h, d.get("changed", {}).get(h, 0)) for h in hosts),
              "failures=%d" % (sum(d.get("failures", {}).values()) + sum(d.get("dark", {}).values())))
PY
}

if "$lab" run first; then ok "ansible-runner run 1: status successful ($(stats first))"; else ko "ansible-runner run 1"; fi
# The credential rendering really came from awx/credential_type.yml.
env_file="$LAB_DIR/runner/env/envvars"
for k in VAULT_ADDR VAULT_CACERT VAULT_TOKEN; do
  if grep -q "^$k:" "$env_file"; then ok "env/envvars has $k (rendered injector)"; else ko "env/envvars lacks $k"; fi
done
cacert="$(python3 -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["VAULT_CACERT"])' "$env_file")"
if cmp -s "$cacert" "$vault_ca"; then ok "VAULT_CACERT file holds the credential's CA bundle: the CA of Vault's TLS certificate"; else ko "VAULT_CACERT file"; fi
# ... and not the PKI's root CA (which signs the hosts' certificates, not Vault's)
curl -fsS --cacert "$vault_ca" "$("$lab" vault-url)/v1/pki/ca/pem" >"$LAB_DIR/pki-root.pem"
if [ -s "$LAB_DIR/pki-root.pem" ] && ! cmp -s "$cacert" "$LAB_DIR/pki-root.pem"; then ok "VAULT_CACERT is not the PKI root CA"; else ko "VAULT_CACERT is the PKI root CA"; fi
addr="$(python3 -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["VAULT_ADDR"])' "$env_file")"
if [[ "$addr" == https://* ]]; then ok "VAULT_ADDR is $addr (verified HTTPS)"; else ko "VAULT_ADDR is $addr"; fi
if grep -q "minibus_site_client_role_id: minibus/csr" "$LAB_DIR/runner/env/extravars"; then ok "extra_vars minibus_site_client_role_id"; else ko "extravars"; fi

if "$lab" run second; then
  s="$(stats second)"
  # localhost: site.yml's first play renews the broker token on the controller (changes nothing)
  if [[ "$s" =~ ^client.minibus.test=0\ (localhost=0\ )?server.minibus.test=0\ failures=0$ ]]; then ok "run 2: nothing changed ($s)"; else ko "run 2 not idempotent: $s"; fi
else
  ko "ansible-runner run 2"
fi

now="$(date +%s)"
while read -r fqdn subject serial not_after; do
  if [[ "$subject" == *"CN=$fqdn"* && "$subject" == *"ST=rengthining"* && "$subject" == *"L=iberty"* ]]; then
    ok "$fqdn certificate: $subject serial $serial, expires in $(( (not_after - now) / 3600 )) h"
  else
    ko "$fqdn certificate subject '$subject'"
  fi
done < <("$lab" certs)

if line="$("$lab" proof)"; then ok "logger line from the client arrived on the server: $line"; else ko "log line did not arrive within 20 s"; fi

# On-host renewal with no Ansible: the renewer, as its service runs it, forced once on each host.
for host in server client; do
  if podman exec "$LAB-$host" runuser -u minibus-certs -- /usr/local/lib/minibus-certs/minibus-certs-renew --force \
       >>"$LAB_DIR/renewer-output.log" 2>&1; then ok "$host: renewer --force as minibus-certs"
  else ko "$host: renewer failed: $(tail -1 "$LAB_DIR/renewer-output.log")"; fi
done

# A host comes back by itself: the client's stored secret id is spent behind its back (a thief's login
# with it, as Vault refusing an expired one after a long offline would), so its next renewal is
# refused and its local fact says it needs a secret id. The scheduled job template
# (minibus.pki.recover) then changes that host alone, the server is left as it was, and the client's
# renewer works again with the wrapped secret id the broker minted.
spend='
import json, ssl, urllib.request
conf = json.load(open("/etc/minibus-certs/renewer.json"))
store = json.load(open(conf["secret_id_store"]))
url = conf["url"][0] if isinstance(conf["url"], list) else conf["url"]
body = json.dumps({"role_id": conf["role_id"], "secret_id": store["secret_id"]}).encode()
req = urllib.request.Request("%s/v1/auth/%s/login" % (url.rstrip("/"), conf["auth_mount_point"]), data=body, method="POST")
with urllib.request.urlopen(req, context=ssl.create_default_context(cafile=conf["ca_cert"]), timeout=10) as answer:
    print(answer.status)
'
if [ "$(podman exec "$LAB-client" python3 -c "$spend" 2>&1)" = 200 ]; then ok "client: its stored secret id spent by another login"
else ko "client: could not spend its stored secret id"; fi
if podman exec "$LAB-client" runuser -u minibus-certs -- /usr/local/lib/minibus-certs/minibus-certs-renew --force \
     >>"$LAB_DIR/renewer-output.log" 2>&1; then ko "client: the renewer still renewed with a spent secret id"
else ok "client: the renewer is refused with the spent secret id ($(tail -1 "$LAB_DIR/renewer-output.log" | cut -c1-160))"; fi
if LAB_PLAYBOOK=minibus.pki.recover "$lab" run recover; then
  s="$(stats recover)"
  if [[ "$s" =~ client.minibus.test=[1-9][0-9]*\ (localhost=0\ )?server.minibus.test=0\ failures=0$ ]]; then
    ok "scheduled minibus.pki.recover: the client alone changed ($s)"
  else ko "scheduled minibus.pki.recover: $s"; fi
else
  ko "scheduled minibus.pki.recover failed"
fi
if podman exec "$LAB-client" runuser -u minibus-certs -- /usr/local/lib/minibus-certs/minibus-certs-renew --force \
     >>"$LAB_DIR/renewer-output.log" 2>&1; then ok "client: the renewer renews again with the broker's new secret id"
else ko "client: the renewer still fails after the recovery: $(tail -1 "$LAB_DIR/renewer-output.log")"; fi
if LAB_PLAYBOOK=minibus.pki.recover "$lab" run recover-again; then
  s="$(stats recover-again)"
  if [[ "$s" =~ ^client.minibus.test=0\ (localhost=0\ )?server.minibus.test=0\ failures=0$ ]]; then ok "the next scheduled run changes nothing ($s)"
  else ko "the next scheduled run changed: $s"; fi
else
  ko "the next scheduled minibus.pki.recover failed"
fi

# Leak scan: every secret Vault handed out (raw audit log), every private key and stored secret id on
# the hosts, and the broker token must appear nowhere in the -vvvv job output or the renewer's output.
podman exec "$LAB-vault" cat /var/log/bao/audit.log >"$LAB_DIR/audit-raw.log"
for host in server client; do
  # where the role put them, from the renewer's own configuration: every key version and the store
  podman exec "$LAB-$host" python3 -c '
import glob, json, os, sys
conf = json.load(open("/etc/minibus-certs/renewer.json"))
tls = os.path.dirname(conf["key_path"])
files = glob.glob(os.path.join(tls, ".minibus", "*", "v-*", os.path.basename(conf["key_path"])))
if not files or not os.path.isfile(conf["secret_id_store"]):
    sys.exit("no key versions under %s or no store %s" % (tls, conf["secret_id_store"]))
for path in files + [conf["secret_id_store"]]:
    sys.stdout.write(open(path).read() + "\n")
' >>"$LAB_DIR/host-secrets.txt"
done
if python3 "$repo/tests/awx/leak_scan.py" --audit "$LAB_DIR/audit-raw.log" --secrets-file "$LAB_DIR/host-secrets.txt" \
     --secret "$(cat "$LAB_DIR/broker-token")" \
     "$LAB_DIR"/runner-*.log "$LAB_DIR/renewer-output.log" "$LAB_DIR"/runner/artifacts/*/stdout \
     "$LAB_DIR"/runner/artifacts/*/job_events/*.json >"$LAB_DIR/leak-scan.txt" 2>&1; then
  ok "leak scan: $(tail -1 "$LAB_DIR/leak-scan.txt")"
else
  ko "leak scan: $(tail -3 "$LAB_DIR/leak-scan.txt" | tr '\n' ' ')"
fi

log "total $((SECONDS - t0)) s"
finish
