#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# make demo: minibus.pki end to end on a fresh Debian 12, as root. One short block per step; the
# detail goes to log files in build/minibus-demo-logs/ (each step names its log).
#   1. installs the missing Debian packages of tools/packages.txt (tools/os-packages.sh demo, quiet)
#   2. the venv and the collection tarball (make dist)
#   3. lab (tools/demo/lab.sh): network minibus-demo (198.18.1.0/24), containers
#      minibus-demo-{vault,server,client}, OpenBao dev server over HTTPS with its own CA
#      (tools/devbao.py; the URL and the CA file are shown), minibus.pki.vault_bootstrap, a broker token
#   4. minibus.pki.site through ansible-runner, as AWX runs it (credential env rendered from
#      awx/credential_type.yml), with the collection installed from the tarball
#   5. shows the certificates and the renewal timer
#   6. a log line crossing mutual TLS, over the transport the role configured (RELP by default)
#   7. a renewer run on the client, its `minibus-certs-renew --status`, and the metrics node_exporter
#      would serve (the published textfile)
# make demo-clean (tools/demo.sh clean) removes containers, network, build/minibus-demo and the logs;
# DEMO_CLEAN_IMAGE=1 removes the image too. Re-running `make demo` starts from a clean lab.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
export LAB=minibus-demo LAB_IP_BASE=10
export LAB_DIR="$repo/build/minibus-demo"
lab="$repo/tools/demo/lab.sh"
logs="$repo/build/minibus-demo-logs"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }
[ -t 2 ] || step() { printf '\n==> %s\n' "$*" >&2; }
say() { printf '%s\n' "$*" >&2; }
# quietly LOG CMD...: CMD's output into $logs/LOG; on failure its last lines and the log's name.
quietly() {
  local log="$logs/$1"; shift
  "$@" >"$log" 2>&1 || { local rc=$?; tail -n 25 "$log" >&2; say "failed (rc $rc); whole log: $log"; exit "$rc"; }
}

if [ "${1:-}" = clean ]; then
  step "removing the demo lab"
  "$lab" down
  rm -rf "$logs"
  if [ "${DEMO_CLEAN_IMAGE:-0}" = 1 ] && CONTAINERS_CONF="$repo/tools/podman/containers.conf" podman image exists localhost/minibus-debian12:latest; then
    step "removing the image localhost/minibus-debian12:latest"
    CONTAINERS_CONF="$repo/tools/podman/containers.conf" podman rmi localhost/minibus-debian12:latest >/dev/null || true
  fi
  exit 0
fi

[ "$(id -u)" = 0 ] || { echo "make demo needs root (rootful podman, debootstrap)" >&2; exit 1; }
t0=$SECONDS

rm -rf "$logs"; mkdir -p "$logs"

step "1/7 system packages (tools/packages.txt)"
OS_PACKAGES_LOG="$logs/apt.log" "$repo/tools/os-packages.sh" demo

step "2/7 Python venv (.venv: ansible, ansible-runner, hvac, OpenBao's bao) and the collection tarball"
quietly venv.log make --no-print-directory venv
export PATH="$repo/.venv/bin:$PATH"
quietly dist.log make --no-print-directory dist
tarball="$repo/dist/minibus-pki-$(sed -n 's/^version: *//p' galaxy.yml).tar.gz"
say "venv .venv ready; tarball ${tarball#"$repo/"} (logs: ${logs#"$repo/"}/venv.log, dist.log)"

step "3/7 lab: image, network, containers, OpenBao, bootstrap (previous demo lab removed first)"
quietly lab-down.log "$lab" down
quietly lab-up.log "$lab" up "$tarball"
vault_ca="$("$lab" vault-ca)"
say "lab up (log: ${logs#"$repo/"}/lab-up.log)"
say "Vault (OpenBao dev server) over verified HTTPS: $("$lab" vault-url)"
say "  trusted CA: $vault_ca ($(openssl x509 -in "$vault_ca" -noout -subject -nameopt compat | sed 's/^subject=//'))"
say "  on the hosts: /etc/ssl/minibus-vault-ca.pem (minibus_certs_vault_ca_cert); in the AWX credential: VAULT_CACERT"
say "  Vault's certificate names: $(openssl x509 -in "$(dirname "$vault_ca")/server.pem" -noout -ext subjectAltName | tail -n +2 | xargs)"

step "4/7 minibus.pki.site through ansible-runner (the AWX way; VAULT_TOKEN = broker token)"
quietly site.log "$lab" run "demo-$(date +%Y%m%d-%H%M%S)"
sed -n 's/^  \(\S*minibus\.test \+: .*\)/  \1/p; s/^\(\[lab [^]]*\] ansible-runner finished: .*\)/\1/p' "$logs/site.log" >&2

step "5/7 certificates on the hosts (read there with openssl)"
now="$(date +%s)"
{
  printf 'HOST\tCN\tSERIAL\tEXPIRES IN\n'
  "$lab" certs | while read -r fqdn subject serial not_after; do
    cn="$(sed -n 's/.*CN=\([^/,]*\).*/\1/p' <<<"$subject")"
    left=$((not_after - now))
    printf '%s\t%s\t%s\t%dh %02dm\n' "$fqdn" "$cn" "$serial" $((left / 3600)) $(((left % 3600) / 60))
  done
} | column -t -s $'\t'
say "renewal timer on the server (runs as minibus-certs, no Ansible needed):"
podman exec minibus-demo-server systemctl list-timers minibus-certs-renew.timer --no-pager |
  sed -n '/^$/q; s/^/  /p' >&2

# The transport the client really uses (the role's minibus_certs_rsyslog_transport, rendered into
# its rsyslog snippet): the forwarding action's output module says it, so the demo never claims
# one it does not use.
rsyslog_conf="$(sed -n 's/^__minibus_certs_rsyslog_conf: *//p' roles/minibus_certs/vars/main.yml)"
client_conf="$(podman exec minibus-demo-client cat "$rsyslog_conf")"
if grep -q '^ *type="omrelp"' <<<"$client_conf"; then
  transport_text="transport relp: RELP over TLS (librelp with OpenSSL), the peer checked by name"
elif grep -q '^ *type="omfwd"' <<<"$client_conf"; then
  transport_text="transport tcp: TCP syslog over TLS (rsyslog's gtls driver), the peer checked by x509/name"
else
  say "no forwarding action in the client's $rsyslog_conf"; exit 1
fi
port="$(sed -n 's/^ *port="\([0-9]*\)"$/\1/p' <<<"$client_conf" | head -n 1)"
step "6/7 proof: a log line from the client, received by the server ($transport_text, port ${port:-?})"
say "client -> server connection:"
podman exec minibus-demo-client ss -tnH state established "( dport = :${port:-6514} )" | sed 's/^/  /' >&2
if line="$("$lab" proof)"; then
  say "received in server.minibus.test:/var/log/minibus/remote.log:"
  echo "  $line"
else
  say "the proof line did not arrive"; exit 1
fi

step "7/7 health on the client: a renewer run, its --status, and the metrics a scrape returns"
renewer=/usr/local/lib/minibus-certs/minibus-certs-renew
podman exec minibus-demo-client systemctl start minibus-certs-renew.service ||
  say "the renewer run failed: podman exec minibus-demo-client journalctl -u minibus-certs-renew.service"
say "\$ runuser -u minibus-certs -- $renewer --status"
podman exec minibus-demo-client runuser -u minibus-certs -- "$renewer" --status | sed 's/^/  /'
# node_exporter is not in the lab: the published textfile is what its textfile collector serves.
textfile="$(sed -n 's/^ *minibus_certs_metrics_textfile_dir: *//p' "$LAB_DIR/runner/inventory/hosts" | head -n 1)"
textfile="${textfile:-/var/lib/minibus-certs}/minibus_certs.prom"
say "\$ grep -v '^#' $textfile   (what node_exporter's textfile collector serves)"
podman exec minibus-demo-client grep -v '^#' "$textfile" | sed 's/^/  /'

step "done in $((SECONDS - t0)) s. Look around: podman exec -it minibus-demo-server bash; clean up: make demo-clean"
