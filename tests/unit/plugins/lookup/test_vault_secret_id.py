# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The lookup's own argument handling, through a real ansible run (every case fails before a Vault request)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("hvac")

ANSIBLE = os.path.join(os.path.dirname(sys.executable), "ansible")
# 127.0.0.1:9 (discard) refuses connections: a case that got that far would say "Could not connect".
URL = "https://127.0.0.1:9"


def _collections_path():
    for entry in sys.path:
        if os.path.isdir(os.path.join(entry, "ansible_collections", "minibus", "pki")):
            return entry
    raise AssertionError("the unit conftest makes the collection importable")


def _lookup(args, env_extra=None):
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_", "MINIBUS_")))
    env.update(ANSIBLE_COLLECTIONS_PATH=_collections_path(), ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_HOME=env.get("TMPDIR", "/tmp") + "/minibus-lookup-unit")
    env.update(env_extra or {})
    expression = "{{ lookup('minibus.pki.vault_secret_id', %s) }}" % args
    proc = subprocess.run([ANSIBLE if os.path.exists(ANSIBLE) else shutil.which("ansible"), "localhost", "-c",
                           "local", "-m", "ansible.builtin.debug", "-a", "msg=%s" % expression],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    return proc.returncode, proc.stdout + proc.stderr


TOKEN = {"VAULT_TOKEN": "s.secret-token"}


@pytest.mark.parametrize("args, env, needle", [
    ("url='%s'" % URL, TOKEN, "at least one AppRole role name"),
    ("'minibus-x', url='http://127.0.0.1:9'", TOKEN, "plain http"),
    ("'minibus-x'", TOKEN, "No Vault address"),
    ("'minibus-x', url='%s'" % URL, {}, "No Vault credentials"),
    ("'minibus-x', url='%s', timeout=0" % URL, TOKEN, "timeout must be a positive"),
    ("'minibus-x', retries=0", dict(TOKEN, VAULT_ADDR=URL), "Could not connect to Vault"),
    # renew_only needs no term, keeps only a given token alive, and reports a failed renewal as an error
    ("url='%s', renew_only=true, role_id='minibus/csr', secret_id='s.secret-token'" % URL, {},
     "renew_only=true keeps a given token alive"),
    ("url='%s', renew_only=true, retries=0" % URL, TOKEN, "Could not connect to Vault"),
])
def test_lookup_refuses_with_one_sentence(args, env, needle):
    code, output = _lookup(args, env)
    assert code != 0
    assert needle in output, output
    assert "s.secret-token" not in output and "Traceback" not in output


def test_lookup_warns_when_certificates_are_not_checked():
    code, output = _lookup("'minibus-x', url='%s', validate_certs=False, retries=0" % URL, TOKEN)
    assert code != 0 and "Could not connect to Vault" in output
    assert "minibus.pki.vault_secret_id: validate_certs is false" in output
