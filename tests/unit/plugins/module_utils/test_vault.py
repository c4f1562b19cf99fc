# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Error mapping, creation-path checks and the retry policy of VaultClient.

The retry tests talk to a tiny local http.server (not a Vault mock): it only answers with scripted
status codes so that the client's retry decisions can be counted.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import socket
import threading

import pytest

pytest.importorskip("hvac")

try:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
except ImportError:  # pragma: no cover
    pytest.skip("Python 3 only", allow_module_level=True)

from ansible_collections.minibus.pki.plugins.module_utils import vault
from ansible_collections.minibus.pki.plugins.module_utils.errors import (
    MinibusError,
    SecretIdRejected,
    VaultUnreachable,
    WrappingTokenRejected,
)

SECRET = "hvs.CAESIsupersecretvalue42"
URL = "https://vault.example.org:8200"


@pytest.fixture
def client():
    c = vault.VaultClient(URL, retries=2, backoff=0.01)
    yield c
    c.close()


def _assert_one_sentence(message):
    assert "\n" not in message and "\t" not in message
    assert message.endswith(".")


@pytest.mark.parametrize("status,errors_list,cls,needle", [
    (503, ["Vault is sealed"], VaultUnreachable, "is sealed"),
    (400, ["1 error occurred:\n\t* invalid role or secret ID\n\n"], SecretIdRejected, "AppRole login was refused"),
    (400, ["invalid secret id"], SecretIdRejected, "AppRole login was refused"),
    (400, ["wrapping token is not valid or does not exist"], WrappingTokenRejected, "intercepted"),
    (403, ["1 error occurred:\n\t* permission denied\n\n"], MinibusError, "denied permission on pki_int/sign/r"),
    (404, ["no handler for route \"pki_int/sign/r\""], MinibusError, "nothing at pki_int/sign/r"),
    (404, [], MinibusError, "(HTTP 404)"),
    (500, ["internal error"], VaultUnreachable, "failed on the request"),
    (400, ["some other problem"], MinibusError, "Vault refused the request (some other problem <redacted>)"),
])
def test_error_for(client, status, errors_list, cls, needle):
    errors_list = [e + " " + SECRET if e else e for e in errors_list]
    client.remember_secret(SECRET)
    exc = client._error_for(status, errors_list, "pki_int/sign/r", "the request")
    assert type(exc) is cls  # pylint: disable=unidiomatic-typecheck
    assert exc.status == status
    assert needle in exc.message
    _assert_one_sentence(exc.message)
    assert SECRET not in exc.message
    assert SECRET not in str(exc)


def test_error_for_multiline_detail_is_folded(client):
    exc = client._error_for(403, ["2 errors occurred:\n\t* permission denied\n\t* bad token\n\n"], "p", "w")
    assert "(permission denied bad token)" in exc.message
    _assert_one_sentence(exc.message)


def test_error_for_sealed_needs_503(client):
    # a 400 that merely mentions 'sealed' is not a sealed Vault
    assert type(client._error_for(400, ["sealed envelope"], "p", "w")) is MinibusError  # pylint: disable=unidiomatic-typecheck


# --- creation path -------------------------------------------------------------------------

def test_check_creation_path_exact():
    vault.check_creation_path("auth/approle/role/minibus-csr/secret-id", "auth/approle/role/minibus-csr/secret-id")


@pytest.mark.parametrize("actual", ["sys/wrapping/wrap", "auth/approle/role/other/secret-id", None, ""])
def test_check_creation_path_mismatch(actual):
    with pytest.raises(WrappingTokenRejected) as info:
        vault.check_creation_path(actual, "auth/approle/role/minibus-csr/secret-id")
    assert "intercepted" in info.value.message
    assert "auth/approle/role/minibus-csr/secret-id" in info.value.message
    assert "\n" not in info.value.message


def test_check_creation_path_pattern():
    pattern = r"^auth/approle/role/[^/]+/secret-id$"
    vault.check_creation_path("auth/approle/role/any-role/secret-id", pattern=pattern)
    for bad in ("sys/wrapping/wrap", "auth/approle/role/a/b/secret-id", "auth/other/role/a/secret-id", None):
        with pytest.raises(WrappingTokenRejected):
            vault.check_creation_path(bad, pattern=pattern)


def test_check_creation_path_expected_wins_over_pattern():
    # with an exact expectation, a path that only matches the pattern is refused
    with pytest.raises(WrappingTokenRejected):
        vault.check_creation_path("auth/approle/role/x/secret-id", "auth/approle/role/y/secret-id",
                                  r"^auth/approle/role/[^/]+/secret-id$")


def test_check_creation_path_needs_an_expectation():
    with pytest.raises(WrappingTokenRejected):
        vault.check_creation_path("anything")


def test_unwrap_secret_id_checks_known_creation_path_before_any_request():
    c = vault.VaultClient("http://127.0.0.1:9", retries=0, backoff=0.01)
    try:
        with pytest.raises(WrappingTokenRejected):
            vault.unwrap_secret_id(c, "hvs.wrapping-token", "approle", "minibus-csr",
                                   known_creation_path="sys/wrapping/wrap")
        assert c.request_count == 0
    finally:
        c.close()


# --- retry policy against a tiny local HTTP server -----------------------------------------

class _Script:
    def __init__(self, answers, final=(200, {})):
        self.answers = list(answers)
        self.final = final
        self.hits = 0
        self.lock = threading.Lock()

    def next(self):
        with self.lock:
            self.hits += 1
            return self.answers.pop(0) if self.answers else self.final


@pytest.fixture
def server():
    servers = []

    def start(script):
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # one request per connection: shutdown never waits

            def _answer(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                status, body = script.next()
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, *args):
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
        thread.daemon = True
        thread.start()
        servers.append(httpd)
        return "http://127.0.0.1:%d" % httpd.server_address[1]

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


SEALED = (503, {"errors": ["Vault is sealed"]})


@pytest.mark.parametrize("consumes_secret", [False, True])
def test_retries_sealed_then_succeeds(server, consumes_secret):
    script = _Script([SEALED] * 3)
    c = vault.VaultClient(server(script), retries=3, backoff=0.01)
    try:
        assert c.request("POST", "auth/approle/login", data={"role_id": "r"}, consumes_secret=consumes_secret) == {}
    finally:
        c.close()
    assert script.hits == 4 and c.request_count == 4


def test_gives_up_after_retries(server):
    script = _Script([SEALED] * 3)
    c = vault.VaultClient(server(script), retries=2, backoff=0.01)
    try:
        with pytest.raises(VaultUnreachable) as info:
            c.request("GET", "sys/health")
    finally:
        c.close()
    assert "sealed" in info.value.message
    assert script.hits == 3 and c.request_count == 3


def test_500_not_retried_when_consuming_a_secret(server):
    script = _Script([(500, {"errors": ["internal error " + SECRET]})] * 5)
    c = vault.VaultClient(server(script), retries=3, backoff=0.01)
    c.remember_secret(SECRET)
    try:
        with pytest.raises(VaultUnreachable) as info:
            c.request("POST", "auth/approle/login", consumes_secret=True, what="the AppRole login")
    finally:
        c.close()
    assert script.hits == 1 and c.request_count == 1
    assert "not retried" in info.value.message and SECRET not in info.value.message
    _assert_one_sentence(info.value.message)


def test_500_retried_for_ordinary_requests(server):
    script = _Script([(500, {"errors": ["internal error"]})] * 2)
    c = vault.VaultClient(server(script), retries=3, backoff=0.01)
    try:
        assert c.request("GET", "sys/health") == {}
    finally:
        c.close()
    assert script.hits == 3


def test_4xx_never_retried(server):
    script = _Script([(400, {"errors": ["invalid role or secret ID"]})] * 5)
    c = vault.VaultClient(server(script), retries=3, backoff=0.01)
    try:
        with pytest.raises(SecretIdRejected):
            c.request("POST", "auth/approle/login", consumes_secret=True)
    finally:
        c.close()
    assert script.hits == 1


def test_429_retried_even_when_consuming(server):
    script = _Script([(429, {"errors": ["rate limited"]})])
    c = vault.VaultClient(server(script), retries=1, backoff=0.01)
    try:
        assert c.request("POST", "sys/wrapping/unwrap", consumes_secret=True) == {}
    finally:
        c.close()
    assert script.hits == 2


def test_token_header_secret_is_scrubbed(server):
    script = _Script([(403, {"errors": ["permission denied for " + SECRET]})])
    c = vault.VaultClient(server(script), retries=0, backoff=0.01)
    try:
        with pytest.raises(MinibusError) as info:
            c.request("GET", "pki_int/roles/x", token=SECRET)
    finally:
        c.close()
    assert SECRET not in info.value.message and "<redacted>" in info.value.message


def _closed_port():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.mark.parametrize("consumes_secret", [False, True])
def test_connection_refused_is_retried(consumes_secret):
    url = "http://127.0.0.1:%d" % _closed_port()
    c = vault.VaultClient(url, retries=2, backoff=0.01, timeout=5)
    try:
        with pytest.raises(VaultUnreachable) as info:
            c.request("POST", "auth/approle/login", consumes_secret=consumes_secret)
    finally:
        c.close()
    assert "Could not connect" in info.value.message and url in info.value.message
    assert "connection refused" in info.value.message
    assert "not retried" not in info.value.message
    _assert_one_sentence(info.value.message)
    assert c.request_count == 3  # refused means never sent: retried even for a single-use secret


def test_an_answer_above_the_size_cap_is_refused_and_one_just_below_is_read(server, monkeypatch):
    monkeypatch.setattr(vault, "MAX_ANSWER_BYTES", 4096)
    big = _Script([(200, {"data": {"certificate": "x" * 5000}})], final=(200, {"data": {"certificate": "x" * 3000}}))
    c = vault.VaultClient(server(big), retries=0, backoff=0.01)
    try:
        with pytest.raises(MinibusError) as info:
            c.request("POST", "pki_int/sign/minibus-server", what="the certificate request")
        assert "answered the certificate request with more than 4 KiB" in info.value.message
        assert len(c.request("POST", "pki_int/sign/minibus-server")["data"]["certificate"]) == 3000
    finally:
        c.close()
