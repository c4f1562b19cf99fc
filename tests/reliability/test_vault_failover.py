# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Several Vault addresses in url, against real OpenBao dev servers (and one fake Vault).

- The first address is dead (nothing listens): the second serves the whole issuance (unwrap, login,
  sign, the next secret id, revoke).
- The first node is sealed (a second real OpenBao, sealed): the second serves.
- A login that reached a node which then died mid-answer is not sent to the next address: the secret
  id is still unused there afterwards.

Each server has its own TLS CA; ca_cert is one bundle of all of them, as for a real cluster's CA.
"""

from __future__ import absolute_import, division, print_function

import os
import socket
import subprocess

import pytest

from labs.hosts import (
    APPROLE_NAME, BIN_DIR, clean_env, host_params, ROLE_ID, run_renewer, store_record, write_renewer_config
)
from labs.vault import Vault, running
from labs.fake_vault import FakeVault
from ansible_collections.minibus.pki.plugins.module_utils import issuance, vault as core
from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError


def _bundle(tmp_path, *paths):
    bundle = tmp_path / "cluster-ca.pem"
    bundle.write_text("".join(open(p).read() for p in paths))
    return str(bundle)


def _dead_address():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return "https://127.0.0.1:%d" % port


@pytest.fixture(scope="module")
def sealed_node():
    with running(Vault, "minibus-failover-sealed-", bootstrap=False) as node:
        node.seal()
        yield node


def _issue(vault, host_dir, urls, ca_cert):
    params = host_params(vault, host_dir, url=urls, ca_cert=ca_cert, retries=0,
                         secret_id_wrapping_token=vault.mint_wrapped())
    result = issuance.ensure_certificate(params)
    assert result["issued"] and result["secret_id_rotated"], result
    assert store_record(host_dir)["state"] == "ready"
    return result


def test_a_dead_first_address_passes_the_issuance_to_the_second(vault, host_dir):
    _issue(vault, host_dir, [_dead_address(), vault.url], vault.ca_cert)


def test_a_sealed_first_node_passes_the_issuance_to_the_second(vault, sealed_node, host_dir, tmp_path):
    bundle = _bundle(tmp_path, sealed_node.ca_cert, vault.ca_cert)
    # alone, the sealed node is reached and says so (not a TLS failure): the bundle trusts it
    client = core.client_from_options(host_params(vault, host_dir, url=[sealed_node.url], ca_cert=bundle, retries=0))
    try:
        with pytest.raises(MinibusError) as info:
            client.request("GET", "sys/mounts", token="root", what="the mount list")
    finally:
        client.close()
    assert "is sealed" in info.value.message, info.value.message
    _issue(vault, host_dir, [sealed_node.url, vault.url], bundle)


def test_a_login_that_reached_a_node_that_died_is_not_sent_to_the_next(vault, host_dir, tmp_path):
    fake = FakeVault(str(tmp_path))
    logins = []

    def die_mid_answer(method, path, headers, body):
        if path.endswith("/login"):
            logins.append(path)
            return None, {}, lambda wfile: wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"auth\"")
        return None

    fake.route = die_mid_answer
    # a renewal-mount secret id (what a host logs in with at renewal), minted with the root token
    secret_id = vault.unwrap(vault.mint_wrapped(mount="approle", token=vault.root_token))["secret_id"]
    client = core.client_from_options(host_params(vault, host_dir, url=[fake.url, vault.url],
                                                  ca_cert=_bundle(tmp_path, fake.ca_path, vault.ca_cert), retries=3))
    try:
        with pytest.raises(MinibusError) as info:
            core.approle_login(client, ROLE_ID, secret_id)
    finally:
        client.close()
        fake.stop()
    message = info.value.message
    assert "not retried" in message and secret_id not in message and fake.url in message, message
    assert logins == ["/v1/auth/approle/login"]
    # never sent to the second address: the secret id still logs in there, once
    assert vault.login(secret_id)["auth"]["client_token"]
    assert os.listdir(host_dir) == []


def test_the_renewer_and_the_lookup_take_several_addresses(vault, host_dir):
    dead = _dead_address()
    # the renewer: a config whose url lists a dead address first (as the role writes a list)
    params = host_params(vault, host_dir, url=[dead, vault.url], retries=0,
                         secret_id_wrapping_token=vault.mint_wrapped())
    assert issuance.ensure_certificate(params)["issued"]
    config = write_renewer_config(vault, host_dir, url=[dead, vault.url], retries=0)
    out = run_renewer(config)
    assert out.returncode == 0, out.stdout + out.stderr
    # the lookup on the controller: VAULT_ADDR with a comma-separated list
    out = subprocess.run(
        [os.path.join(BIN_DIR, "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-m", "ansible.builtin.debug",
         "-a", "msg={{ lookup('minibus.pki.vault_secret_id', '%s') | length > 0 }}" % APPROLE_NAME],
        env=clean_env(VAULT_ADDR="%s,%s" % (dead, vault.url), VAULT_CACERT=vault.ca_cert,
                      VAULT_TOKEN=vault.broker_token),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120, check=False)
    assert out.returncode == 0 and '"msg": true' in out.stdout, out.stdout
