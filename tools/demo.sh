#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# make demo: minibus.pki end to end on a fresh Debian 12, as root.
#   1. installs what is missing (apt: podman runc debootstrap rsync jq openssl curl; the venv)
#   2. builds the test image (debootstrap, no registry) and the collection tarball (make dist)
#   3. lab (tools/demo/lab.sh): network minibus-demo (198.18.1.0/24), containers
#      minibus-demo-{vault,server,client}, OpenBao dev server over HTTPS with its own CA
#      (tools/devbao.py; the URL and the CA file are shown), minibus.pki.vault_bootstrap, a broker token
#   4. minibus.pki.site through ansible-runner, as AWX runs it (credential env rendered from
#      awx/credential_type.yml), with the collection installed from the tarball
#   5. shows the certificates, the renewal timer, and a log line crossing mutual TLS
# make demo-clean (tools/demo.sh clean) removes containers, network and build/minibus-demo;
# DEMO_CLEAN_IMAGE=1 removes the image too. Re-running `make demo` starts from a clean lab.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export LAB=minibus-demo LAB_IP_BASE=10
export LAB_DIR="$repo/build/minibus-demo"
lab="$repo/tools/demo/lab.sh"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
[ -t 2 ] || step() { printf '\n==> %s\n' "$*" >&2; }

if [ "${1:-}" = clean ]; then
  step "removing the demo lab"
  "$lab" down
  if [ "${DEMO_CLEAN_IMAGE:-0}" = 1 ] && CONTAINERS_CONF="$repo/tools/podman/containers.conf" podman image exists localhost/minibus-debian12:latest; then
    step "removing the image localhost/minibus-debian12:latest"
    CONTAINERS_CONF="$repo/tools/podman/containers.conf" podman rmi localhost/minibus-debian12:latest >/dev/null || true
  fi
  exit 0
fi

[ "$(id -u)" = 0 ] || { echo "make demo needs root (rootful podman, debootstrap)" >&2; exit 1; }
t0=$SECONDS

step "1/6 system packages"
missing=()
for p in podman runc debootstrap rsync jq openssl curl make python3-venv; do
  dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
  echo "all present (podman runc debootstrap rsync jq openssl curl make python3-venv)" >&2
fi

step "2/6 Python venv (.venv: ansible, ansible-runner, hvac, OpenBao's bao) and the collection tarball"
make --no-print-directory venv
export PATH="$repo/.venv/bin:$PATH"
make --no-print-directory dist
tarball="$repo/dist/minibus-pki-$(sed -n 's/^version: *//p' galaxy.yml).tar.gz"

step "3/6 lab: image, network, containers, OpenBao, bootstrap (previous demo lab removed first)"
"$lab" down
"$lab" up "$tarball"
vault_ca="$("$lab" vault-ca)"
echo >&2
echo "Vault (OpenBao dev server) over verified HTTPS: $("$lab" vault-url)" >&2
echo "  trusted CA: $vault_ca ($(openssl x509 -in "$vault_ca" -noout -subject -nameopt compat | sed 's/^subject=//'))" >&2
echo "  on the hosts: /etc/ssl/minibus-vault-ca.pem (minibus_certs_vault_ca_cert); in the AWX credential: VAULT_CACERT" >&2
echo "  Vault's certificate names: $(openssl x509 -in "$(dirname "$vault_ca")/server.pem" -noout -ext subjectAltName | tail -n +2 | xargs)" >&2

step "4/6 minibus.pki.site through ansible-runner (the AWX way; VAULT_TOKEN = broker token)"
"$lab" run "demo-$(date +%Y%m%d-%H%M%S)"

step "5/6 certificates on the hosts (read there with openssl)"
now="$(date +%s)"
{
  printf 'HOST\tCN\tSERIAL\tEXPIRES IN\n'
  "$lab" certs | while read -r fqdn subject serial not_after; do
    cn="$(sed -n 's/.*CN=\([^/,]*\).*/\1/p' <<<"$subject")"
    left=$((not_after - now))
    printf '%s\t%s\t%s\t%dh %02dm\n' "$fqdn" "$cn" "$serial" $((left / 3600)) $(((left % 3600) / 60))
  done
} | column -t -s $'\t'
echo >&2
echo "subject of server.minibus.test: $("$lab" certs | awk 'NR==1 {print $2}')" >&2
echo >&2
echo "renewal timer on the server (runs as minibus-certs, no Ansible needed):" >&2
podman exec minibus-demo-server systemctl list-timers minibus-certs-renew.timer --no-pager | sed 's/^/  /'

step "6/6 proof: a log line from the client, received by the server over mutual TLS (gtls, x509/name)"
echo "client -> server TLS connection:" >&2
podman exec minibus-demo-client ss -tnH state established '( dport = :6514 )' | sed 's/^/  /'
if line="$("$lab" proof)"; then
  echo "received in server.minibus.test:/var/log/minibus/remote.log:" >&2
  echo "  $line"
else
  echo "the proof line did not arrive" >&2; exit 1
fi

step "done in $((SECONDS - t0)) s. Look around: podman exec -it minibus-demo-server bash; clean up: make demo-clean"
