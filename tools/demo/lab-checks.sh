# shellcheck shell=bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Sourced by the tests that run against tools/demo/lab.sh (tests/awx/test_runner.sh,
# tests/examples/test_fleet_on_hosts.sh): PASS/FAIL counting, and a fresh lab removed at exit.
#   lab_checks_start NAME TARBALL WHAT   starts the lab ($lab, with LAB, LAB_IP_BASE, LAB_NODES,
#                                        LAB_DIR exported); KEEP_LAB=1 leaves it running afterwards
#   ok TEXT | ko TEXT | log TEXT | finish (exit status: 0 when nothing failed)
: "${lab:?set lab to tools/demo/lab.sh before sourcing lab-checks.sh}"
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
