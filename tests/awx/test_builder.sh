#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# ansible-builder: generate the execution environment's build context offline and check it.
# (`ansible-builder build` needs a container registry, unreachable here: see awx/README.md.)
# Usage: tests/awx/test_builder.sh    (needs dist/minibus-pki-<version>.tar.gz: make dist)
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
[ -x .venv/bin/ansible-builder ] && export PATH="$repo/.venv/bin:$PATH"
pass=0 fail=0
log() { printf '[test-builder] %s\n' "$*" >&2; }
check() { local what="$1"; shift; if "$@"; then pass=$((pass + 1)); log "PASS $what"; else fail=$((fail + 1)); log "FAIL $what"; fi; }

version="$(sed -n 's/^version: *//p' galaxy.yml)"
tarball="dist/minibus-pki-$version.tar.gz"
check "tarball $tarball exists (make dist)" test -f "$tarball"
check "execution-environment.yml takes the tarball by glob (no version written twice)" \
  grep -q "src: dist/minibus-pki-\*.tar.gz" execution-environment.yml
check "dist/ holds only the current tarball" test "$(find dist -name 'minibus-pki-*.tar.gz' | wc -l)" -eq 1

ctx="$repo/build/ee"
rm -rf "$ctx"
mkdir -p "$repo/build"  # a fresh clone has none yet (make test makes it earlier, make test-awx alone does not)
if ansible-builder create --file execution-environment.yml --context "$ctx" >"$repo/build/ee-create.log" 2>&1; then
  pass=$((pass + 1)); log "PASS ansible-builder create (offline)"
else
  fail=$((fail + 1)); log "FAIL ansible-builder create"; cat "$repo/build/ee-create.log" >&2
fi
cf="$ctx/Containerfile"
check "context has a Containerfile" test -s "$cf"
check "Containerfile uses the base image" grep -q 'quay.io/ansible/awx-ee' "$cf"
check "python requirements copied" grep -q '^hvac' "$ctx/_build/requirements.txt"
check "python requirements: cryptography" grep -q '^cryptography' "$ctx/_build/requirements.txt"
check "system requirements copied" grep -q 'libssl-dev' "$ctx/_build/bindep.txt"
check "galaxy requirements name the tarball" grep -q '/build/minibus-pki.tar.gz' "$ctx/_build/requirements.yml"
check "collection tarball in the context" cmp -s "$tarball" "$ctx/_build/minibus-pki/minibus-pki-$version.tar.gz"
check "Containerfile copies it before the galaxy step" grep -q 'COPY _build/minibus-pki/' "$cf"
# The base image's own ansible-core is older than requires_ansible: the context must install the tested
# ansible-core and ansible-runner (requirements-dev.txt's pins), and that ansible-core must satisfy requires_ansible.
core_pin="$(sed -n 's/^ansible-core==//p' requirements-dev.txt)"
runner_pin="$(sed -n 's/^ansible-runner==//p' requirements-dev.txt)"
check "Containerfile installs ansible-core==$core_pin" grep -Eq "^ARG ANSIBLE_INSTALL_REFS=\".*ansible-core==$core_pin( |\")" "$cf"
check "Containerfile installs ansible-runner==$runner_pin" grep -Eq "^ARG ANSIBLE_INSTALL_REFS=\".*ansible-runner==$runner_pin( |\")" "$cf"
check "Containerfile runs pip install of them" grep -q "pip install.*\$ANSIBLE_INSTALL_REFS" "$cf"
check "pinned ansible-core $core_pin satisfies meta/runtime.yml requires_ansible" python3 -c '
import sys, yaml
from packaging.specifiers import SpecifierSet
spec = SpecifierSet(yaml.safe_load(open("meta/runtime.yml"))["requires_ansible"])
sys.exit(0 if sys.argv[1] in spec else 1)' "$core_pin"
log "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
