# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The AWX credential type's injectors through ansible-runner: the lookup mints with the injected environment.

awx/credential_type.yml's injectors are rendered as AWX renders them (tools/demo/awx_credential.py: AWX's
sandboxed Jinja2, empty inputs left out of the namespace, the file always written) into a private_data_dir,
and ansible-runner runs a playbook whose lookup has no keyword. With the "Vault CA bundle" input left empty,
as its help text allows, the system trust store must be used: here REQUESTS_CA_BUNDLE, the execution
environment's trust store as requests sees it, holds the dev server's CA.
"""

from __future__ import absolute_import, division, print_function

import os
import subprocess

import pytest
import yaml

from labs.hosts import APPROLE_NAME, BIN_DIR, clean_env, COLLECTIONS_DIR, REPO_ROOT


def _run_job(vault, tmp_path, ca_input):
    pdd = tmp_path / "pdd"
    (pdd / "env").mkdir(parents=True)
    (pdd / "project").mkdir()
    (pdd / "inventory").mkdir()
    (pdd / "inventory" / "hosts").write_text("localhost ansible_connection=local\n")
    token_file = tmp_path / "broker-token"
    token_file.write_text(vault.broker_token)
    subprocess.run([os.path.join(BIN_DIR, "python"), os.path.join(REPO_ROOT, "tools", "demo", "awx_credential.py"),
                    os.path.join(REPO_ROOT, "awx", "credential_type.yml"), str(pdd)],
                   env=clean_env(CRED_VAULT_URL=vault.url, CRED_BROKER_TOKEN_FILE=str(token_file),
                                 CRED_CA_BUNDLE_FILE=ca_input, COLLECTIONS=COLLECTIONS_DIR),
                   check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    envvars_path = pdd / "env" / "envvars"
    envvars = yaml.safe_load(envvars_path.read_text())
    # The execution environment's system trust store, as requests (under hvac) finds it.
    envvars["REQUESTS_CA_BUNDLE"] = vault.ca_cert
    envvars["ANSIBLE_PYTHON_INTERPRETER"] = os.path.join(BIN_DIR, "python")
    envvars_path.write_text(yaml.safe_dump(envvars))
    (pdd / "project" / "mint.yml").write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Mint with the injected environment only", "no_log": True,
                   "ansible.builtin.set_fact": {
                       "wrapped": "{{ lookup('minibus.pki.vault_secret_id', '%s') }}" % APPROLE_NAME}}]}]))
    env = dict((k, v) for k, v in clean_env().items() if k != "REQUESTS_CA_BUNDLE")
    out = subprocess.run([os.path.join(BIN_DIR, "ansible-runner"), "run", str(pdd), "-p", "mint.yml", "--ident", "job"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
                         check=False, timeout=300)
    status = (pdd / "artifacts" / "job" / "status").read_text().strip() if (pdd / "artifacts" / "job" / "status").exists() \
        else "unknown"
    return envvars, status, out.stdout


@pytest.mark.parametrize("with_ca", [False, True], ids=["ca-input-empty", "ca-input-given"])
def test_credential_injects_a_working_environment(vault, tmp_path, with_ca):
    envvars, status, output = _run_job(vault, tmp_path, vault.ca_cert if with_ca else "")
    assert status == "successful", output
    assert vault.broker_token not in output
    if with_ca:
        with open(envvars["VAULT_CACERT"]) as bundle, open(vault.ca_cert) as ca:
            assert bundle.read() == ca.read()
    else:
        # never a path to an empty file: empty means unset, i.e. the system trust store
        assert envvars["VAULT_CACERT"] == ""
