#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# ansible-test sanity --local on the collection copy, with whichever ansible-test is first on PATH.
#
#   tools/sanity.sh COLLECTION_DIR [--skip-test NAME ...]
#
# Even with --local, ansible-test gives each sanity test its own venv under ~/.ansible/test/venv
# and bootstraps pip there with a get-pip.py it downloads from a host that is not reachable here.
# Its cache is seeded with tools/get_pip_standin.py (ensurepip, then the pins from the index);
# the per-test requirements then come from the index. --python 3.11: the one interpreter we have.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
coll_dir="$1"; shift

ansible_test_dir="$(python -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')"
pip_version="$(sed -n "s/^ *pip='\([0-9.]*\)',.*/\1/p" "$ansible_test_dir/_internal/python_requirements.py")"
cache="$HOME/.ansible/test/cache"
seed="$cache/get_pip_${pip_version//./_}.py"
if [ -n "$pip_version" ] && [ ! -s "$seed" ]; then
  mkdir -p "$cache"
  cp "$here/get_pip_standin.py" "$seed"
fi
cd "$coll_dir"
exec ansible-test sanity --local --python 3.11 --color no "$@"
