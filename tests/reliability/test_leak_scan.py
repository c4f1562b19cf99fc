# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""No secret Vault handed out, and no private key, appears in -vvvv Ansible output or renewer output.

The secrets come from Vault's own raw audit log (log_raw = "true", see conftest): every client
token, wrapping token, secret id and private key in any request or response, plus the content of
every key.pem in the certificate stores. The scanner is checked to find a planted secret first.
"""

from __future__ import absolute_import, division, print_function

import glob
import os
import subprocess
import textwrap

from labs.hosts import APPROLE_NAME, BIN_DIR, bootstrap_host, clean_env, ROLE_ID, run_renewer, write_renewer_config

SECRET_KEYS = ("client_token", "token", "secret_id", "private_key")
# The dev server's root token is the fixture literal "root": it is only used by the fixture itself
# (bootstrap, seal), never by the play or the renewer, and the word is everywhere in PKI output.
NOT_SECRETS = {"root"}


def audit_secrets(entries):
    found = {}

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if key in SECRET_KEYS and isinstance(value, str) and value and value not in NOT_SECRETS:
                    found.setdefault(value, "%s.%s" % (path, key))
                walk(value, "%s.%s" % (path, key))
        elif isinstance(node, list):
            for item in node:
                walk(item, path)

    for entry in entries:
        walk(entry, entry.get("type", "?"))
    return found


def key_material(directories):
    """Every key.pem in every version dir of the stores: the whole PEM and each base64 body line."""
    needles = {}
    for directory in directories:
        for path in glob.glob(os.path.join(directory, "**", ".minibus", "*", "v-*", "key.pem"), recursive=True):
            with open(path) as handle:
                pem = handle.read()
            needles[pem.strip()] = path
            for line in pem.splitlines():
                if line and not line.startswith("-----") and len(line) >= 16:
                    needles[line] = path
    return needles


def scan(text, needles):
    hits = sorted(set(where for needle, where in needles.items() if needle and needle in text))
    if "PRIVATE KEY" in text:
        hits.append("PEM marker PRIVATE KEY")
    return hits


PLAY = textwrap.dedent("""\
    - name: Leak scan play
      hosts: localhost
      connection: local
      gather_facts: false
      vars:
        ansible_python_interpreter: "{{ ansible_playbook_python }}"
        __url: "{{ lookup('ansible.builtin.env', 'LEAK_VAULT_URL') }}"
        __broker: "{{ lookup('ansible.builtin.env', 'LEAK_BROKER_TOKEN') }}"
        __dir: "{{ lookup('ansible.builtin.env', 'LEAK_DIR') }}"
        __cert: &cert
          role_id: %(role_id)s
          approle_name: %(approle)s
          common_name: host1.minibus.test
          cert_path: "{{ __dir }}/tls/cert.pem"
          key_path: "{{ __dir }}/tls/key.pem"
          chain_path: "{{ __dir }}/tls/chain.pem"
          ca_path: "{{ __dir }}/tls/ca.pem"
          secret_id_store: "{{ __dir }}/secret-id.json"
      module_defaults:
        group/minibus.pki.vault:
          url: "{{ __url }}"
      tasks:
        - name: Issue (sign) with a wrapped secret id from the lookup, keeping a secret id store
          minibus.pki.vault_pki_issue:
            <<: *cert
            secret_id_wrapping_token: "{{ lookup('minibus.pki.vault_secret_id', '%(approle)s', url=__url, token=__broker) }}"
          register: issued

        - name: Renew from the store
          minibus.pki.vault_pki_issue:
            <<: *cert
            force: true
          register: renewed

        - name: Log in with another wrapped secret id
          minibus.pki.vault_approle_login:
            role_id: %(role_id)s
            approle_name: %(approle)s
            secret_id_wrapping_token: "{{ lookup('minibus.pki.vault_secret_id', '%(approle)s', url=__url, token=__broker) }}"
          register: login
          no_log: true

        - name: Unwrap another one
          minibus.pki.vault_unwrap:
            wrapping_token: "{{ lookup('minibus.pki.vault_secret_id', '%(approle)s', url=__url, token=__broker) }}"
            expected_creation_path: auth/minibus-bootstrap/role/%(approle)s/secret-id
          register: unwrapped
          no_log: true

        - name: Everything worked
          ansible.builtin.assert:
            that:
              - issued is changed and issued.issued and issued.secret_id_rotated
              - renewed is changed and renewed.serial != issued.serial
              - login.accessor | length > 0
              - unwrapped.creation_path is search('secret-id')
    """) % {"role_id": ROLE_ID, "approle": APPROLE_NAME}


def test_scanner_finds_a_planted_secret():
    needles = {"s.AbCdEfGhIjKlMnOpQrStUvWx": "planted"}
    assert scan("ok: [localhost] => token=s.AbCdEfGhIjKlMnOpQrStUvWx\n", needles) == ["planted"]
    assert scan("-----BEGIN PRIVATE KEY-----", {}) == ["PEM marker PRIVATE KEY"]
    assert scan("nothing to see", needles) == []


def test_no_secret_in_verbose_ansible_or_renewer_output(vault, tmp_path):
    play_dir, renewer_dir = tmp_path / "play", tmp_path / "renewer"
    play_dir.mkdir()
    renewer_dir.mkdir()
    playbook = tmp_path / "leak.yml"
    playbook.write_text(PLAY)
    proc = subprocess.run(
        [os.path.join(BIN_DIR, "ansible-playbook"), "-vvvv", "-i", "localhost,", str(playbook)],
        env=clean_env(LEAK_VAULT_URL=vault.url, VAULT_CACERT=vault.ca_cert, LEAK_BROKER_TOKEN=vault.broker_token,
                      LEAK_DIR=str(play_dir)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=600, check=False)
    captured = [("ansible-playbook -vvvv", proc.stdout + proc.stderr)]
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "ok=5" in proc.stdout and "changed=" in proc.stdout

    bootstrap_host(vault, str(renewer_dir))
    keys = key_material([str(play_dir), str(renewer_dir)])
    config = write_renewer_config(vault, str(renewer_dir))
    for i in range(2):
        run = run_renewer(config)
        assert run.returncode == 0, run.stderr
        assert "renewed" in run.stdout
        captured.append(("renewer run %d" % (i + 1), run.stdout + run.stderr))
        keys.update(key_material([str(renewer_dir)]))

    secrets = audit_secrets(vault.audit_entries())
    kinds = [where.rsplit(".", 1)[-1] for where in secrets.values()]
    # the play: 3 lookups + 2 rotations, the renewer host: 1 bootstrap + 3 rotations -> many of each
    assert kinds.count("secret_id") >= 8, kinds
    assert kinds.count("token") >= 8, kinds  # wrapping tokens (wrap_info.token, lookup data.token)
    assert kinds.count("client_token") >= 6, kinds
    assert len(keys) >= 10
    needles = dict(secrets)
    needles.update(keys)
    # self-check on the real needles: a planted one is found
    planted = sorted(secrets)[0]
    assert scan("xx %s yy" % planted, needles)
    for what, text in captured:
        assert text.strip()
        hits = scan(text, needles)
        assert not hits, "%s leaked: %s" % (what, hits)
