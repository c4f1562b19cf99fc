# SPDX-License-Identifier: GPL-3.0-or-later
# shellcheck shell=bash disable=SC2154  # $work and $root come from the sourcing script
# TAP-style helpers shared by the tests in tests/vault/ (sourced, not run). The caller sets
# $work (its temp dir) and the counters passed=0 failed=0 before sourcing.

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

# Playbooks run by path (vault_bootstrap.yml, ca_rotate.yml) use the collection's own filter
# plugins: put this checkout on the collections path as minibus.pki.
mkdir -p "$work/repo-coll/ansible_collections/minibus"
ln -sfn "$root" "$work/repo-coll/ansible_collections/minibus/pki"
export ANSIBLE_COLLECTIONS_PATH="$work/repo-coll"
