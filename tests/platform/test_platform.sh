#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# The minibus_certs Ansible role's per-OS layer and package step, on each supported image
# (localhost/minibus-debian12, localhost/minibus-debian13; tools/podman/build-image.sh):
#   1. offline re-run: every package present, apt lists two days old, no network at all
#      (podman --network none): the package step reports ok, changes nothing, runs no apt update
#      (`cache_valid_time: 3600` made every re-run an hour later fail without a mirror);
#   2. a missing package is installed through the package manager (check mode: no network);
#   3. an OS without vars/<distribution>-<major>.yml stops with one sentence naming the file.
# Needs root, podman and the images; about 15 s per image. Usage: tests/platform/test_platform.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
here="$repo/tests/platform"
export CONTAINERS_CONF="$repo/tools/podman/containers.conf"
export ANSIBLE_NOCOLOR=1 ANSIBLE_FORCE_COLOR=0 ANSIBLE_RETRY_FILES_ENABLED=0
[ -x "$repo/.venv/bin/ansible-playbook" ] && export PATH="$repo/.venv/bin:$PATH"
SUITES="${SUITES:-bookworm trixie}"

work="$(mktemp -d /tmp/minibus-platform.XXXXXX)"
names=()
cleanup() {
  local n
  for n in "${names[@]}"; do podman rm -f "$n" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }
ok() { printf 'ok: %s\n' "$*"; }

# The collection as minibus.pki for the role's FQCN.
mkdir -p "$work/coll/ansible_collections/minibus"
ln -s "$repo" "$work/coll/ansible_collections/minibus/pki"
export ANSIBLE_COLLECTIONS_PATH="$work/coll"

run_play() { # name, extra ansible-playbook args...; output in $work/out
  local name="$1"; shift
  printf '%s ansible_connection=containers.podman.podman ansible_python_interpreter=/usr/bin/python3\n' \
    "$name" >"$work/inventory"
  ansible-playbook -i "$work/inventory" "$here/packages.yml" "$@" >"$work/out" 2>&1
}
recap() { sed -n 's/^\([^ ]*\) *: \(ok=.*\)$/\2/p' "$work/out" | tr -s ' '; }

for suite in $SUITES; do
  case "$suite" in bookworm) major=12 ;; trixie) major=13 ;; *) fail "unknown suite $suite" ;; esac
  image="localhost/minibus-debian$major:latest"
  podman image exists "$image" || fail "$image is missing: tools/podman/build-image.sh $suite"
  name="minibus-platform-$suite-$$"
  names+=("$name")
  podman run -d --name "$name" --network none "$image" sleep infinity >/dev/null
  # Lists and the success stamp two days old: cache_valid_time=3600 would force an update.
  podman exec "$name" sh -c 'mkdir -p /var/lib/apt/periodic && touch /var/lib/apt/periodic/update-success-stamp &&
    touch -d "2 days ago" /var/lib/apt/periodic/update-success-stamp /var/lib/apt/lists /var/lib/apt/lists/*'
  before="$(podman exec "$name" stat -c %Y /var/lib/apt/lists /var/lib/apt/periodic/update-success-stamp)"

  # 1. offline re-run
  run_play "$name" || { cat "$work/out"; fail "Debian $major: offline re-run failed"; }
  grep -q 'Packages | list what is installed' "$work/out" || { cat "$work/out"; fail "Debian $major: package step did not run"; }
  r="$(recap)"
  [[ "$r" == *"changed=0"*"failed=0"* ]] || { cat "$work/out"; fail "Debian $major: offline re-run: $r"; }
  grep -A2 'install the missing ones' "$work/out" | grep -q '^skipping' \
    || { cat "$work/out"; fail "Debian $major: the install task ran although every package is present"; }
  after="$(podman exec "$name" stat -c %Y /var/lib/apt/lists /var/lib/apt/periodic/update-success-stamp)"
  [ "$before" = "$after" ] || fail "Debian $major: apt lists were touched ($before -> $after)"
  ok "Debian $major: offline re-run with stale apt lists: package step ok, nothing changed, no apt update"

  # 2. a missing package goes to the package manager (check mode: nothing installed, no network)
  podman exec "$name" dpkg --remove --force-depends rsyslog-gnutls >/dev/null 2>&1
  run_play "$name" --check || true
  [ -z "${VERBOSE:-}" ] || cat "$work/out"
  grep -A2 'install the missing ones' "$work/out" | grep -Eq '^(changed|fatal)' \
    || { cat "$work/out"; fail "Debian $major: a missing package did not reach the install task"; }
  ok "Debian $major: a missing package reaches the install task"
done

# 3. an unsupported OS: the role without its vars file for this host's OS
cp -a "$repo/roles/minibus_certs" "$work/role"
rm -f "$work/role/vars/Debian-"*.yml "$work/role/vars/RedHat-"*.yml
mkdir -p "$work/roles" && mv "$work/role" "$work/roles/minibus_certs"
cat >"$work/unsupported.yml" <<'PLAY'
- name: Platform layer without a vars file for this OS
  hosts: localhost
  connection: local
  gather_facts: true
  tasks:
    - name: Platform layer
      ansible.builtin.include_role:
        name: minibus_certs
        tasks_from: platform
PLAY
rc=0
ANSIBLE_ROLES_PATH="$work/roles" ansible-playbook -i localhost, -e ansible_python_interpreter=/usr/bin/python3 "$work/unsupported.yml" >"$work/out" 2>&1 || rc=$?
[ "$rc" != 0 ] || { cat "$work/out"; fail "an OS without vars file was accepted"; }
grep -q 'does not support .* add its package names in roles/minibus_certs/vars/Debian-' "$work/out" \
  || { cat "$work/out"; fail "no one-sentence message for an unsupported OS"; }
! grep -q Traceback "$work/out" || { cat "$work/out"; fail "traceback for an unsupported OS"; }
ok "an OS without vars/<distribution>-<major>.yml stops with one sentence naming the file"
