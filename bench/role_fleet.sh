#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# P7, the whole role on a fleet of container hosts: minibus.pki.site from the tarball on one log
# server and ROLE_FLEET_CLIENTS clients (default 5) in systemd containers (tools/demo/lab.sh, OpenBao
# over HTTPS bootstrapped with minibus.pki.vault_bootstrap, a broker token), run with ansible-playbook
# the way the README says. Measured in one run, on the same hosts:
#   first converge (every host new), re-run (nothing to do), the floor: a play that only gathers
#   facts on the same hosts (what the role's re-run needs at least), and the scheduled run
#   minibus.pki.recover on the now healthy fleet;
#   wall time, tasks per host (ok + skipped from PLAY RECAP), hosts changed, the hosts' Vault requests
#   (audit log).
# Writes a Markdown table to bench/results/role-fleet-<date>.md and prints it. Needs root (podman).
# Usage: bench/role_fleet.sh dist/minibus-pki-<version>.tar.gz    (make bench runs it)
#   ROLE_FLEET_CLIENTS=N   clients (default 5)   KEEP_LAB=1   leave the lab running
set -euo pipefail
tarball="$(readlink -f "${1:?usage: $0 TARBALL}")"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
clients="${ROLE_FLEET_CLIENTS:-5}"
nodes="vault logs"
for i in $(seq 1 "$clients"); do nodes="$nodes c$i"; done
export LAB="${LAB:-minibus-p7}" LAB_IP_BASE="${LAB_IP_BASE:-50}" LAB_NODES="$nodes"
# shellcheck source=tools/demo/lab-checks.sh
. "$repo/tools/demo/lab-checks.sh"
lab_checks_start role-fleet "$tarball" "vault, logs and $clients clients"

work="$LAB_DIR/p7"
mkdir -p "$work"
{
  echo "all:"
  echo "  vars:"
  echo "    ansible_connection: containers.podman.podman"
  echo "    ansible_python_interpreter: /usr/bin/python3"
  echo "    minibus_certs_vault_url: https://vault.minibus.test:8200"
  echo "    minibus_certs_vault_ca_cert: /etc/ssl/minibus-vault-ca.pem"
  echo "  children:"
  echo "    rsyslog_servers:"
  echo "      hosts:"
  echo "        logs.minibus.test: {ansible_host: $LAB-logs}"
  echo "      vars:"
  echo "        minibus_certs_rsyslog_permitted_peers: ['*.minibus.test']"
  echo "    rsyslog_clients:"
  echo "      hosts:"
  for i in $(seq 1 "$clients"); do echo "        c$i.minibus.test: {ansible_host: $LAB-c$i}"; done
  echo "      vars:"
  echo "        minibus_certs_rsyslog_server_address: logs.minibus.test"
  echo "        minibus_certs_rsyslog_server_name: logs.minibus.test"
} >"$work/inventory.yml"
cat >"$work/floor.yml" <<'PB'
---
- name: The floor, fact gathering only
  hosts: rsyslog_servers:rsyslog_clients
  gather_facts: true
  become: true
  tasks: []
PB
home="$work/home"
mkdir -p "$home/.minibus.pki"
cp "$LAB_DIR/root-ca.pem" "$home/.minibus.pki/root-ca.pem"

play() {  # play NAME PLAYBOOK: runs it, prints its wall seconds
  local t0 t1
  t0="$(date +%s.%N)"
  env -u VAULT_ADDR -u VAULT_TOKEN -u VAULT_CACERT -u BAO_ADDR -u BAO_TOKEN -u MINIBUS_CSR_SECRET_ID -u ANSIBLE_CONFIG \
    HOME="$home" ANSIBLE_COLLECTIONS_PATH="$LAB_DIR/collections" \
    VAULT_ADDR="$("$lab" vault-url)" VAULT_CACERT="$("$lab" vault-ca)" VAULT_TOKEN="$(cat "$LAB_DIR/broker-token")" \
    ansible-playbook --forks 10 -i "$work/inventory.yml" "$2" >"$work/$1.log" 2>&1 || { ko "$1 failed: $(grep -E 'fatal:|ERROR' "$work/$1.log" | head -3 | cut -c1-300)"; return 1; }
  t1="$(date +%s.%N)"
  python3 -c "import sys; print('%.1f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$t0" "$t1"
}
# "<tasks per host, median> <hosts changed>/<hosts>" from a run's PLAY RECAP (role hosts only)
recap() {
  sed -n '/^PLAY RECAP/,$p' "$work/$1.log" | grep -v '^localhost ' |
    sed -nE 's/^[^ ]+ +: ok=([0-9]+) +changed=([0-9]+) +unreachable=[0-9]+ +failed=[0-9]+ +skipped=([0-9]+).*/\1 \2 \3/p' |
    python3 -c '
import sys
rows = [tuple(map(int, line.split())) for line in sys.stdin if line.strip()]
tasks = sorted(ok + skipped for ok, _, skipped in rows)
print("%d %d/%d" % (tasks[len(tasks) // 2], sum(1 for _, changed, _ in rows if changed), len(rows)))'
}
# The hosts' requests: site.yml's broker keep-alive (token lookup-self/renew-self, once a run on the
# controller, not per host) is left out.
requests() {
  podman exec "$LAB-vault" sh -c "grep '\"type\":\"request\"' /var/log/bao/audit.log | grep -vc '\"path\":\"auth/token/\(lookup\|renew\)-self\"'" || true
}

site="minibus.pki.site"
r0="$(requests)"
first="$(play first "$site")" || { finish; exit 1; }
r1="$(requests)"
again="$(play again "$site")" || { finish; exit 1; }
r2="$(requests)"
floor="$(play floor "$work/floor.yml")" || { finish; exit 1; }
# The scheduled run (minibus.pki.recover): only the local fact is gathered, site runs on no healthy host.
recover="$(play recover minibus.pki.recover)" || { finish; exit 1; }
r3="$(requests)"
read -r first_tasks first_changed <<<"$(recap first)"
read -r again_tasks again_changed <<<"$(recap again)"
read -r recover_tasks recover_changed <<<"$(recap recover)"
hosts=$((clients + 1))
ratio() { python3 -c "import sys; print('%.2f' % (float(sys.argv[1]) / float(sys.argv[2])))" "$1" "$2"; }
if [ "${again_changed%%/*}" = 0 ]; then ok "re-run changed nothing ($again_changed hosts changed)"; else ko "re-run changed $again_changed hosts"; fi
if [ "$r2" = "$r1" ]; then ok "re-run sent no Vault request"; else ko "re-run sent $((r2 - r1)) Vault requests"; fi
if [ "$r3" = "$r2" ]; then ok "scheduled run sent no Vault request"; else ko "scheduled run sent $((r3 - r2)) Vault requests"; fi
if [ "${first_changed%%/*}" = "$hosts" ]; then ok "first converge changed every host"; else ko "first converge changed $first_changed hosts"; fi

load="$(cut -d' ' -f1-3 /proc/loadavg)"
out="$repo/bench/results/role-fleet-$(date -u +%F).md"
mkdir -p "$(dirname "$out")"
{
  echo "## P7 the role on $hosts container hosts ($(date -u '+%F %H:%M UTC'), $(nproc) cores, load average $load at the end)"
  echo
  echo "minibus.pki.site from the tarball, ansible-playbook, forks 10, podman connection (no pipelining):"
  echo "1 log server, $clients clients, OpenBao over HTTPS in a container."
  echo
  echo "| run | wall s | tasks per host (median, ok + skipped) | hosts changed | Vault requests (hosts') |"
  echo "|---|---|---|---|---|"
  echo "| first converge | $first | $first_tasks | $first_changed | $((r1 - r0)) |"
  echo "| re-run | $again | $again_tasks | $again_changed | $((r2 - r1)) |"
  echo "| floor: gather_facts only | $floor | 1 | | |"
  echo "| scheduled run, \`minibus.pki.recover\` (healthy fleet) | $recover | $recover_tasks | $recover_changed | $((r3 - r2)) |"
  echo "| **re-run / floor** | **$(ratio "$again" "$floor")** | | | |"
  echo "| **scheduled run / floor** | **$(ratio "$recover" "$floor")** | | | |"
} | tee "$out"
# The lab directory goes with the lab: keep the runs' logs.
mkdir -p "$repo/build/role-fleet-logs"
cp "$work"/*.log "$repo/build/role-fleet-logs/"
log "written ${out#"$repo/"}; the runs' logs in build/role-fleet-logs/"
finish
