# shellcheck shell=bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Sourced by the scripts that run against tools/demo/lab.sh (tests/awx/test_runner.sh,
# tests/examples/test_fleet_on_hosts.sh, bench/role_fleet.sh): PASS/FAIL counting, and a fresh lab
# removed at exit.
# Source it after exporting LAB (and LAB_IP_BASE, LAB_NODES): it sets lab (tools/demo/lab.sh),
# LAB_DIR (default build/$LAB), the venv on PATH and Ansible's colourless output.
#   lab_checks_start NAME TARBALL WHAT   starts the lab; KEEP_LAB=1 leaves it running afterwards
#   ok TEXT | ko TEXT | log TEXT | finish (exit status: 0 when nothing failed)
: "${LAB:?export LAB, the name of the lab, before sourcing lab-checks.sh}"
lab_checks_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
lab="$lab_checks_repo/tools/demo/lab.sh"
export LAB_DIR="${LAB_DIR:-$lab_checks_repo/build/$LAB}"
if [ -x "$lab_checks_repo/.venv/bin/ansible" ]; then export PATH="$lab_checks_repo/.venv/bin:$PATH"; fi
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0
pass=0 fail=0 lab_checks_name=lab
log() { printf '[%s] %s\n' "$lab_checks_name" "$*" >&2; }
ok() { pass=$((pass + 1)); log "PASS $*"; }
ko() { fail=$((fail + 1)); log "FAIL $*"; }
finish() { log "$pass passed, $fail failed"; [ "$fail" -eq 0 ]; }
lab_checks_start() {
  lab_checks_name="$1"
  [ "${KEEP_LAB:-0}" = 1 ] || trap '"$lab" down >/dev/null 2>&1 || true' EXIT
  "$lab" down
  "$lab" up "$2" || { ko "lab up"; finish; exit 1; }
  ok "lab up ($3)"
}
