# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Vault transport against a hostile answerer (fake Vault over HTTPS with its own CA).

- Whoever answers at the Vault address redirects (307) to a plain http:// listener on loopback that
  records every byte it receives: the AppRole login (secret id in the body), a PKI sign (token in
  the header) and the lookup (broker token in the header) send it nothing, and fail with one sentence
  that holds no secret.
- A server that drips its answer (body or headers, a byte every 2 s) is cut at the per-request
  deadline (timeout): the call ends with one sentence, and the dripping server did not get to finish.
"""

from __future__ import absolute_import, division, print_function

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from labs.hosts import BIN_DIR, clean_env
from labs.fake_vault import pem
from ansible_collections.minibus.pki.plugins.module_utils import issuance, vault
from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError
from ansible_collections.minibus.pki.plugins.module_utils.options import AUTH_SPEC, CONNECTION_SPEC

SECRET_ID = "4c1b6f0e-secret-id-never-in-clear-5b2d"
TOKEN = "hvs.fake-broker-token-never-in-clear"


class PlainListener(object):
    """A plain-http listener on loopback that records every byte anyone sends it."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.received = b""
        self.connections = 0
        self._stop = False
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self._stop:
            try:
                conn, _addr = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            self.connections += 1
            conn.settimeout(1)
            try:
                while True:
                    data = conn.recv(65536)
                    if not data:
                        break
                    self.received += data
            except (socket.timeout, OSError):
                pass
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
            except OSError:
                pass
            conn.close()

    def stop(self):
        self._stop = True
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def listener(fake):
    plain = PlainListener()
    fake.route = lambda method, path, headers, body: (307, {"Location": plain.url + path}, b"")
    yield plain
    fake.route = None
    plain.stop()


def _params(fake, tmp_path, **overrides):
    p = {}
    for spec in (CONNECTION_SPEC, AUTH_SPEC, issuance.CERTIFICATE_SPEC):
        for name, option in spec.items():
            p[name] = option.get("default")
    tls = tmp_path / "tls"
    anchor = tmp_path / "root.pem"
    anchor.write_text(pem(fake.pki.root))
    p.update(url=fake.url, ca_cert=fake.ca_path, retries=0, timeout=5, common_name="host1.minibus.test",
             cert_path=str(tls / "cert.pem"), key_path=str(tls / "key.pem"), chain_path=str(tls / "chain.pem"),
             trust_anchor_path=str(anchor))
    p.update(overrides)
    return p


def _assert_redirect_sentence(message, listener, *secrets):
    assert "redirect to %s" % listener.url in message, message
    assert "never follows" in message and "\n" not in message, message
    for secret in secrets:
        assert secret not in message


def _wait_quiet(listener):
    # the listener records what arrives; give a followed redirect time to land before looking
    time.sleep(1.5)


# --- redirects ---------------------------------------------------------------------------------

def test_a_redirected_approle_login_sends_the_secret_id_nowhere(fake, listener, tmp_path):
    client = vault.client_from_options(_params(fake, tmp_path))
    try:
        with pytest.raises(MinibusError) as info:
            vault.approle_login(client, "minibus/csr", SECRET_ID)
    finally:
        client.close()
    _wait_quiet(listener)
    assert listener.received == b"" and listener.connections == 0
    _assert_redirect_sentence(info.value.message, listener, SECRET_ID)


def test_a_redirected_pki_sign_sends_the_token_nowhere(fake, listener, tmp_path):
    params = _params(fake, tmp_path, token=TOKEN)
    with pytest.raises(MinibusError) as info:
        issuance.ensure_certificate(params)
    _wait_quiet(listener)
    assert listener.received == b"" and listener.connections == 0
    _assert_redirect_sentence(info.value.message, listener, TOKEN)
    assert not os.path.exists(params["cert_path"])


def test_a_redirected_lookup_sends_the_broker_token_nowhere(fake, listener, tmp_path):
    out = subprocess.run(
        [os.path.join(BIN_DIR, "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-m", "ansible.builtin.debug",
         "-a", "msg={{ lookup('minibus.pki.vault_secret_id', 'minibus-generate-sign-server-keys') }}"],
        env=clean_env(VAULT_ADDR=fake.url, VAULT_CACERT=fake.ca_path, VAULT_TOKEN=TOKEN),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=120, check=False)
    _wait_quiet(listener)
    assert out.returncode != 0, out.stdout
    assert listener.received == b"" and listener.connections == 0
    assert "redirect to %s" % listener.url in out.stdout and "never follows" in out.stdout, out.stdout
    assert TOKEN not in out.stdout


# --- slow drips --------------------------------------------------------------------------------

class Drip(object):
    """Writes a prefix, then one byte every 2 s; records whether the client let it finish."""

    def __init__(self, prefix, drip, count=40):
        self.prefix, self.drip, self.count = prefix, drip, count
        self.finished = False
        self.cut = False

    def __call__(self, wfile):
        try:
            wfile.write(self.prefix)
            wfile.flush()
            for _byte in range(self.count):
                time.sleep(2)
                wfile.write(self.drip)
                wfile.flush()
            self.finished = True
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.cut = True


DRIPS = {
    "body": lambda: Drip(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", b" "),
    "headers": lambda: Drip(b"HTTP/1.1 200 OK\r\nX-Drip: ", b"x"),
}


@pytest.mark.parametrize("where", sorted(DRIPS))
def test_a_dripped_login_answer_is_cut_at_the_deadline(fake, tmp_path, where):
    drip = DRIPS[where]()
    fake.route = lambda method, path, headers, body: (None, {}, drip)
    client = vault.client_from_options(_params(fake, tmp_path))
    try:
        with pytest.raises(MinibusError) as info:
            vault.approle_login(client, "minibus/csr", SECRET_ID)
    finally:
        client.close()
        fake.route = None
    message = info.value.message
    assert "did not answer the AppRole login within 5 s" in message, message
    assert "not retried" in message and "\n" not in message and SECRET_ID not in message
    assert not drip.finished


# --- a bad ca_cert, through every module and the lookup --------------------------------------

CA_FILES = {
    "missing": (None, "does not exist"),
    "empty": (b"", "is empty"),
    "not PEM": (b"\x30\x82\x01\x0a this is DER-ish junk\n", "holds no PEM certificate"),
    "PEM that does not parse": (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                                "holds no PEM certificate that parses"),
}

PLUGINS = {
    "vault_approle_login": ["-m", "minibus.pki.vault_approle_login", "-a",
                            "role_id=minibus/csr secret_id=%s ca_cert={ca}" % SECRET_ID],
    "vault_unwrap": ["-m", "minibus.pki.vault_unwrap", "-a", "wrapping_token=%s ca_cert={ca} "
                     "expected_creation_path=auth/approle/role/x/secret-id" % TOKEN],
    "vault_pki_issue": ["-m", "minibus.pki.vault_pki_issue", "-a",
                        "token=%s ca_cert={ca} common_name=h.minibus.test cert_path={dir}/cert.pem "
                        "key_path={dir}/key.pem" % TOKEN],
    "lookup": ["-m", "ansible.builtin.debug", "-a",
               "msg={{{{ lookup('minibus.pki.vault_secret_id', 'r', ca_cert='{ca}') }}}}"],
}


def _ansible(argv, **env):
    return subprocess.run([os.path.join(BIN_DIR, "ansible"), "localhost", "-c", "local", "-i", "localhost,",
                           "-e", "ansible_python_interpreter=%s" % sys.executable] + argv,
                          env=clean_env(**env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120, check=False)


@pytest.mark.parametrize("plugin", sorted(PLUGINS))
@pytest.mark.parametrize("case", sorted(CA_FILES))
def test_a_bad_ca_cert_is_one_sentence_naming_the_option_and_file(fake, tmp_path, plugin, case):
    content, needle = CA_FILES[case]
    ca = tmp_path / "vault-ca.pem"
    if content is not None:
        ca.write_bytes(content)
    count = len(fake.requests)
    argv = [a.format(ca=ca, dir=tmp_path) for a in PLUGINS[plugin]]
    out = _ansible(argv, VAULT_ADDR=fake.url, VAULT_TOKEN=TOKEN)
    assert out.returncode != 0, out.stdout
    # ad-hoc ansible echoes the task's own arguments on failure: look at the plugin's message only
    messages = [line for line in out.stdout.splitlines() if "ca_cert %s %s" % (ca, needle) in line]
    assert messages, out.stdout
    assert all(SECRET_ID not in m and TOKEN not in m for m in messages)
    assert "Traceback" not in out.stdout
    assert len(fake.requests) == count  # nothing was sent
    assert sorted(os.listdir(str(tmp_path))) == (["vault-ca.pem"] if content is not None else [])


def test_a_ca_cert_from_vault_cacert_names_the_variable(fake, tmp_path):
    ca = tmp_path / "missing-ca.pem"
    out = _ansible([a.format(ca="", dir=tmp_path).replace(" ca_cert=", " ") for a in PLUGINS["vault_approle_login"]],
                   VAULT_ADDR=fake.url, VAULT_CACERT=str(ca))
    assert out.returncode != 0 and "ca_cert (from VAULT_CACERT) %s does not exist" % ca in out.stdout, out.stdout
