# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""TLS bad inputs against a real OpenBao over HTTPS (tools/devbao.py), the way users call it.

Each case goes through ansible-playbook (modules and the lookup as a user runs them) or the
renewer's command line: wrong CA, a certificate that does not cover the address connected to,
an expired Vault certificate. Each fails with one sentence naming the reason, no traceback, no
secret, nothing written on the host, and the wrapping token handed in is still unused (no request
crossed the failed handshake). ``validate_certs: false`` works against the same Vault, with one warning.
"""

from __future__ import absolute_import, division, print_function

import json
import re
import os
import subprocess
import textwrap

import pytest
import requests

from labs import vault as devbao
from labs.hosts import (
    APPROLE_NAME, BIN_DIR, bootstrap_host, clean_env, one_line_output, paths, ROLE_ID, run_renewer,
    store_record, tree_digest, write_renewer_config
)

PLAY = textwrap.dedent("""\
    - name: TLS cases
      hosts: localhost
      connection: local
      gather_facts: false
      vars:
        ansible_python_interpreter: "{{ ansible_playbook_python }}"
        __cases: "{{ lookup('ansible.builtin.file', lookup('ansible.builtin.env', 'TLS_CASES')) | from_json }}"
      tasks:
        - name: Run vault_pki_issue
          minibus.pki.vault_pki_issue:
            url: "{{ item.url }}"
            ca_cert: "{{ item.ca_cert | default(omit) }}"
            validate_certs: "{{ item.validate_certs | default(omit) }}"
            retries: 0
            timeout: 10
            role_id: %(role_id)s
            approle_name: %(approle)s
            secret_id_wrapping_token: "{{ item.wrapping_token }}"
            common_name: host1.minibus.test
            cert_path: "{{ item.dir }}/tls/cert.pem"
            key_path: "{{ item.dir }}/tls/key.pem"
            chain_path: "{{ item.dir }}/tls/chain.pem"
            ca_path: "{{ item.dir }}/tls/ca.pem"
            secret_id_store: "{{ item.dir }}/secret-id.json"
          loop: "{{ __cases.issue }}"
          loop_control:
            label: "{{ item.name }}"
          register: __issue
          ignore_errors: true
          no_log: true

        - name: Mint with the lookup (controller side) against a Vault it must not trust
          ansible.builtin.set_fact:
            __minted: "{{ lookup('minibus.pki.vault_secret_id', '%(approle)s', url=item.url, ca_cert=item.ca_cert,
                          token=__cases.broker_token) }}"
          loop: "{{ __cases.lookup }}"
          loop_control:
            label: "{{ item.name }}"
          register: __lookup
          ignore_errors: true
          no_log: true

        - name: Hand the results to the test
          ansible.builtin.copy:
            dest: "{{ lookup('ansible.builtin.env', 'TLS_RESULTS') }}"
            content: "{{ {'issue': __issue.results, 'lookup': __lookup.results} | to_json }}"
            mode: "0600"
    """) % {"role_id": ROLE_ID, "approle": APPROLE_NAME}


@pytest.fixture(scope="module")
def bad_servers(tmp_path_factory):
    """Two more dev servers whose certificates cannot be trusted, and a CA that signed neither."""
    base = tmp_path_factory.mktemp("tls-servers")
    # covers only vault.minibus.test: connecting to 127.0.0.1 is a host name mismatch
    mismatch = devbao.DevBao(str(base / "mismatch"), names=["vault.minibus.test"], default_sans=False)
    expired = devbao.DevBao(str(base / "expired"), expired=True)
    other = str(base / "other-ca")
    os.makedirs(other)
    try:
        mismatch.start()
        expired.start()
        yield {"mismatch": mismatch, "expired": expired, "other_ca": devbao.make_tls(other, names=["elsewhere"])}
    finally:
        mismatch.stop()
        expired.stop()


def wrapping_token_unused(vault, token):
    body = vault.api("POST", "sys/wrapping/lookup", json_body={"token": token}, expect=None)
    return bool(body and body.get("data", {}).get("creation_path"))


def run_cases(vault, tmp_path, issue, lookup):
    cases_file, results_file, playbook = tmp_path / "cases.json", tmp_path / "results.json", tmp_path / "tls.yml"
    cases_file.write_text(json.dumps({"issue": issue, "lookup": lookup, "broker_token": vault.broker_token}))
    playbook.write_text(PLAY)
    proc = subprocess.run([os.path.join(BIN_DIR, "ansible-playbook"), "-i", "localhost,", str(playbook)],
                          env=clean_env(TLS_CASES=str(cases_file), TLS_RESULTS=str(results_file)),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert "Traceback" not in proc.stdout
    results = json.loads(results_file.read_text())
    return ({r["item"]["name"]: r for r in results["issue"]}, {r["item"]["name"]: r for r in results["lookup"]},
            proc.stdout)


def test_tls_bad_inputs_fail_in_one_sentence_and_change_nothing(vault, bad_servers, tmp_path):
    cases = [
        ("wrong CA", vault.url, bad_servers["other_ca"], "unable to get local issuer certificate"),
        ("host name mismatch", bad_servers["mismatch"].url, bad_servers["mismatch"].ca_cert, "mismatch"),
        ("expired Vault certificate", bad_servers["expired"].url, bad_servers["expired"].ca_cert, "expired"),
    ]
    issue = []
    for name, url, ca_cert, _reason in cases:
        host = tmp_path / name.replace(" ", "-")
        host.mkdir()
        issue.append(dict(name=name, url=url, ca_cert=ca_cert, dir=str(host), wrapping_token=vault.mint_wrapped("300s")))
    lookup = [dict(name=name, url=url, ca_cert=ca_cert) for name, url, ca_cert, _reason in cases]
    issued, minted, output = run_cases(vault, tmp_path, issue, lookup)

    for (name, url, _ca, reason), case in zip(cases, issue):
        for kind, result in (("vault_pki_issue", issued[name]), ("lookup", minted[name])):
            msg = result.get("msg", "")
            assert result.get("failed"), "%s (%s) did not fail: %s" % (name, kind, result)
            assert "\n" not in msg.strip() and "Traceback" not in json.dumps(result), (name, kind, msg)
            assert "TLS verification of Vault at %s failed" % url in msg, (name, kind, msg)
            assert reason in msg.lower(), (name, kind, msg)
            answer = json.dumps(dict((k, v) for k, v in result.items() if k != "item"))  # item: our own input
            assert case["wrapping_token"] not in answer and vault.broker_token not in answer, (name, kind)
        # a first run that fails writes no certificate, key, chain or secret id store (the lock
        # file the module takes before contacting Vault is the only thing it may leave)
        written = sorted(os.path.relpath(os.path.join(root, f), case["dir"])
                         for root, _dirs, files in os.walk(case["dir"]) for f in files)
        assert written in ([], ["tls/.minibus/.lock"]), "%s: files written: %s" % (name, written)
        # nothing crossed the failed handshake: the wrapping token handed in is still unused
        assert wrapping_token_unused(vault, case["wrapping_token"]), name
    assert vault.broker_token not in output


def test_renewer_refuses_an_expired_vault_certificate_in_one_line(vault, bad_servers, host_dir):
    bootstrap_host(vault, host_dir)
    secret_before = store_record(host_dir)["secret_id"]
    config = write_renewer_config(vault, host_dir, url=bad_servers["expired"].url,
                                  ca_cert=bad_servers["expired"].ca_cert, retries=0)
    before = tree_digest(host_dir)
    proc = run_renewer(config)
    assert proc.returncode == 1
    line = one_line_output(proc)
    assert "TLS verification of Vault at %s failed" % bad_servers["expired"].url in line, line
    assert "expired" in line.lower(), line
    assert tree_digest(host_dir) == before
    assert store_record(host_dir)["secret_id"] == secret_before
    # The failure is recorded for --check and the metrics (the one file a failed run writes).
    state_path = os.path.join(os.path.dirname(paths(host_dir)["secret_id_store"]), "renewer-state.json")
    with open(state_path) as handle:
        state = json.load(handle)
    assert state["last_result"] == "failed" and "expired" in state["last_message"].lower(), state


def test_validate_certs_false_works(vault, tmp_path):
    host = tmp_path / "insecure"
    host.mkdir()
    issue = [dict(name="validate_certs false", url=vault.url, validate_certs=False, dir=str(host),
                  wrapping_token=vault.mint_wrapped("300s"))]
    issued, _minted, output = run_cases(vault, tmp_path, issue, [])
    result = issued["validate_certs false"]
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] and result["issued"], result
    assert os.path.exists(str(host / "tls" / "cert.pem"))
    # ... and says what it gives up, once
    # (ansible-core shows module warnings as [WARNING] lines; 2.19 keeps them out of the registered result)
    assert output.count("validate_certs is false") == 1, output[-3000:]


def test_no_listener_of_the_dev_server_speaks_plain_http(vault):
    """Every listener bao reports (the TLS one clients use and the one -dev always adds) refuses HTTP."""
    addresses = re.findall(r'Listener \d+: tcp \(addr: "([^"]+)"', vault.log_text())
    assert len(addresses) == 2, addresses
    assert "127.0.0.1:%d" % int(vault.url.rsplit(":", 1)[1]) in addresses
    for address in addresses:
        plain = requests.get("http://%s/v1/sys/health" % address, timeout=5)
        assert plain.status_code == 400 and "HTTP request to an HTTPS server" in plain.text, (address, plain.text)
    # and the clients' listener answers over TLS verified with the launcher's CA
    assert requests.get(vault.url + "/v1/sys/health", timeout=5, verify=vault.ca_cert).status_code == 200
