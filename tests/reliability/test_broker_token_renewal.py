# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A periodic broker token outlives its period while the lookup uses it (renewed at half the period).

The broker token AWX holds is created with -period (vault_bootstrap.yml's instructions, tools/demo,
tests/awx). Here it has a 30 s period and, for more than two periods, jobs alternate: one where no host
needs a bootstrap (only minibus.pki.site's keep-alive play runs, minting nothing) and one where the lookup
mints. Every run must succeed, and the token must still be alive at the end.
"""

from __future__ import absolute_import, division, print_function

import os
import subprocess
import sys
import time

import yaml

from labs.hosts import APPROLE_NAME, BIN_DIR, clean_env, REPO_ROOT

PERIOD_SECONDS = 30


def _mint_once(vault, tmp_path, token):
    play = tmp_path / "mint.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Mint", "no_log": True,
                   "ansible.builtin.set_fact": {"wrapped": "{{ lookup('minibus.pki.vault_secret_id', '%s') }}"
                                                % APPROLE_NAME},
                   "vars": {"minibus_pki_vault_url": vault.url, "minibus_pki_vault_ca_cert": vault.ca_cert,
                            "minibus_pki_vault_token": token}}]}]))
    return subprocess.run(
        [os.path.join(BIN_DIR, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
         "-e", "ansible_python_interpreter=%s" % sys.executable],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False,
        timeout=120)


def _site_without_hosts(vault, token):
    """minibus.pki.site with the AWX credential's environment and no rsyslog host: only the keep-alive play."""
    return subprocess.run(
        [os.path.join(BIN_DIR, "ansible-playbook"), "-i", "localhost,", os.path.join(REPO_ROOT, "playbooks", "site.yml"),
         "-e", "ansible_python_interpreter=%s" % sys.executable],
        env=clean_env(VAULT_ADDR=vault.url, VAULT_CACERT=vault.ca_cert, VAULT_TOKEN=token),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False, timeout=120)


def test_periodic_broker_token_lives_past_two_periods(vault, tmp_path):
    token = vault.api("POST", "auth/token/create", json_body={
        "policies": ["minibus-broker"], "period": "%ds" % PERIOD_SECONDS})["auth"]["client_token"]
    start = time.monotonic()
    runs = 0
    # Runs a few seconds apart (well within half a period), for more than two periods.
    while time.monotonic() - start < 2 * PERIOD_SECONDS + 10:
        out = _site_without_hosts(vault, token) if runs % 2 == 0 else _mint_once(vault, tmp_path, token)
        runs += 1
        assert out.returncode == 0 and "could not be renewed" not in out.stdout, \
            "run %d, %.0f s after the token was made:\n%s" % (runs, time.monotonic() - start, out.stdout)
        assert token not in out.stdout
        time.sleep(3)
    assert _mint_once(vault, tmp_path, token).returncode == 0
    info = vault.api("GET", "auth/token/lookup-self", token=token)["data"]
    assert info["ttl"] > 0 and info["period"] == PERIOD_SECONDS
