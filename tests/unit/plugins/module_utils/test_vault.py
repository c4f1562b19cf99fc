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
        self.headers = []
        self.lock = threading.Lock()

    def next(self, headers=None):
        with self.lock:
            self.hits += 1
            self.headers.append(dict(headers or {}))
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
                answer = script.next(self.headers)
                status, body = answer[:2]
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (answer[2] if len(answer) > 2 else {}).items():
                    self.send_header(name, value)
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


# --- several addresses, redirects, deadlines -------------------------------------------------

def test_address_order_puts_the_one_that_served_first():
    addresses = ["https://a", "https://b", "https://c"]
    assert vault.address_order(addresses, "https://b") == ["https://b", "https://a", "https://c"]
    assert vault.address_order(addresses, "https://gone") == addresses


@pytest.mark.parametrize("url,expected", [
    ("https://a:8200", ["https://a:8200"]),
    ("https://a:8200/, https://b:8200,,https://a:8200", ["https://a:8200", "https://b:8200"]),
    (["https://a", "https://b,https://c"], ["https://a", "https://b", "https://c"]),
    (None, []),
    ("", []),
])
def test_addresses_of(url, expected):
    assert vault.addresses_of(url) == expected


@pytest.mark.parametrize("location,expected", [
    ("http://b:8200/v1/auth/approle/login?x=1", "http://b:8200"),
    ("http://user:pw@evil.example/v1/x", "http://evil.example"),
    ("/v1/sys/elsewhere", "https://a:8200"),
    ("https://[::1]:8300/v1/x", "https://[::1]:8300"),
    (None, "https://a:8200"),
])
def test_redirect_target_keeps_scheme_and_host_only(location, expected):
    assert vault.redirect_target(location, "https://a:8200") == expected


def test_redirect_sentence():
    message = vault.redirect_sentence("https://a:8200", "http://b:8200/v1/auth/approle/login?token=" + SECRET)
    assert message == ("Vault at https://a:8200 answered with a redirect to http://b:8200, which minibus.pki never "
                       "follows: set url to the node that serves (or list every node in url); nothing was sent there.")


def test_run_budget():
    assert vault.run_budget(30, 3, 1) == 120
    assert vault.run_budget(10, 0, 3) == 30
    assert vault.run_budget(10, 0, 3, total_timeout=7) == 7


def _client(urls, **kwargs):
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("timeout", 5)
    return vault.VaultClient(urls, **kwargs)


STANDBY_ANSWERS = {
    "sealed": SEALED,
    "429": (429, {"errors": []}),
    "perf standby 473": (473, {"errors": []}),
    "not the active node": (500, {"errors": ["local node not active but active cluster node not found"]}),
    "redirect": (307, {}),
}


@pytest.mark.parametrize("answer", sorted(STANDBY_ANSWERS))
@pytest.mark.parametrize("consumes_secret", [False, True])
def test_a_node_that_cannot_serve_passes_the_request_to_the_next(server, answer, consumes_secret):
    first, second = _Script([], final=STANDBY_ANSWERS[answer]), _Script([], final=(200, {"data": {"ok": 1}}))
    urls = [server(first), server(second)]
    c = _client(urls, retries=0)
    try:
        assert c.request("POST", "auth/approle/login", consumes_secret=consumes_secret) == {"data": {"ok": 1}}
        assert c.url == urls[1]
        c.request("GET", "sys/health")  # the node that served is asked first from now on
    finally:
        c.close()
    assert first.hits == 1 and second.hits == 2


@pytest.mark.parametrize("consumes_secret", [False, True])
def test_a_refused_first_address_passes_to_the_second(server, consumes_secret):
    second = _Script([], final=(200, {}))
    c = _client(["http://127.0.0.1:%d" % _closed_port(), server(second)], retries=0)
    try:
        assert c.request("POST", "sys/wrapping/unwrap", consumes_secret=consumes_secret) == {}
    finally:
        c.close()
    assert second.hits == 1


def test_a_login_that_reached_a_node_is_never_sent_to_another(server):
    first, second = _Script([], final=(500, {"errors": ["internal error"]})), _Script([], final=(200, {}))
    c = _client([server(first), server(second)], retries=3)
    try:
        with pytest.raises(VaultUnreachable) as info:
            c.request("POST", "auth/approle/login", consumes_secret=True, what="the AppRole login")
    finally:
        c.close()
    assert first.hits == 1 and second.hits == 0
    assert "not retried" in info.value.message and not info.value.not_processed


def _header(script, name):
    return [dict((k.lower(), v) for k, v in h.items()).get(name.lower()) for h in script.headers]


def test_a_login_to_several_addresses_asks_standbys_not_to_forward_it(server):
    first, second = _Script([], final=(307, {})), _Script([], final=(200, {}))
    c = _client([server(first), server(second)], retries=0)
    try:
        c.request("POST", "auth/approle/login", consumes_secret=True)
        c.request("GET", "sys/health")
    finally:
        c.close()
    assert _header(first, "X-Vault-No-Request-Forwarding") == ["true"]
    # only what spends a secret: everything else may be forwarded as usual
    assert _header(second, "X-Vault-No-Request-Forwarding") == ["true", None]


@pytest.mark.parametrize("answer", [(307, {}), (503, {"errors": ["no active Vault instance found"]})])
def test_a_forwarding_standby_s_redirect_or_no_active_node_is_not_proof_the_login_was_not_applied(server, answer):
    # one address: the standby forwards, and answers this way also when the forwarding failed after the active
    # node applied the login
    script = _Script([], final=answer)
    c = _client(server(script), retries=3)
    try:
        with pytest.raises(MinibusError) as info:
            c.request("POST", "auth/approle/login", consumes_secret=True, what="the AppRole login")
    finally:
        c.close()
    assert script.hits == 1 and _header(script, "X-Vault-No-Request-Forwarding") == [None]
    assert "may already be spent" in info.value.message and not info.value.not_processed


@pytest.mark.parametrize("status", [502, 504])
def test_a_login_answered_502_or_504_is_never_repeated(server, status):
    # a proxy in front of Vault may have passed the login on before it gave up
    first, second = _Script([], final=(status, {"errors": ["bad gateway"]})), _Script([], final=(200, {}))
    c = _client([server(first), server(second)], retries=3)
    try:
        with pytest.raises(VaultUnreachable) as info:
            c.request("POST", "auth/approle/login", consumes_secret=True, what="the AppRole login")
        assert first.hits == 1
        with pytest.raises(VaultUnreachable):
            c.request("GET", "sys/health")  # anything else is still repeated (retries=3)
    finally:
        c.close()
    assert first.hits == 1 + 4 and second.hits == 0
    assert "may already be spent" in info.value.message and not info.value.not_processed


def test_when_no_address_serves_one_sentence_names_them(server):
    urls = [server(_Script([], final=SEALED)), server(_Script([], final=SEALED))]
    c = _client(urls, retries=1)
    try:
        with pytest.raises(VaultUnreachable) as info:
            c.request("GET", "sys/health", what="the health check")
    finally:
        c.close()
    message = info.value.message
    assert message.startswith("None of the Vault addresses %s, %s could serve the health check" % tuple(urls))
    assert "is sealed" in message and info.value.not_processed
    _assert_one_sentence(message)
    assert c.request_count == 4  # two rounds (retries=1) of two addresses


def test_a_redirect_alone_is_one_sentence_and_not_retried(server):
    script = _Script([], final=(307, {}))
    url = server(script)
    c = _client(url, retries=3)
    try:
        with pytest.raises(MinibusError) as info:
            c.request("POST", "auth/approle/login", consumes_secret=True)
    finally:
        c.close()
    assert "answered with a redirect" in info.value.message and script.hits == 1


@pytest.fixture
def dripping_server():
    """Accepts, sends a status line, then a header byte every 0.3 s for ever (until the client leaves)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4)
    stop = threading.Event()

    def serve():
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _addr = sock.accept()
            except (socket.timeout, OSError):
                continue
            try:
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
                while not stop.wait(0.3):
                    conn.sendall(b"x")
            except OSError:
                pass
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % sock.getsockname()[1]
    stop.set()
    thread.join(5)
    sock.close()


def test_a_dripped_answer_is_cut_at_the_deadline_and_named(dripping_server):
    c = _client(dripping_server, retries=0, timeout=1)
    try:
        with pytest.raises(VaultUnreachable) as info:
            c.request("POST", "auth/approle/login", consumes_secret=True, what="the AppRole login")
    finally:
        c.close()
    assert "did not answer the AppRole login within 1 s (timeout)" in info.value.message
    assert "not retried" in info.value.message and not info.value.not_processed


def test_the_run_budget_ends_retries(dripping_server):
    c = _client(dripping_server, retries=5, timeout=1, total_timeout=2)
    try:
        with pytest.raises(VaultUnreachable) as info:
            c.request("GET", "sys/health", what="the health check")
    finally:
        c.close()
    assert "total_timeout" in info.value.message and c.request_count <= 3


# --- storage index (X-Vault-Index): read-your-writes through standbys that serve reads ---------

INDEX_A = "eyJjbHVzdGVyIjoiYyIsInZhbHVlIjoiMzQifQ=="
INDEX_B = "eyJjbHVzdGVyIjoiYyIsInZhbHVlIjoiMzUifQ=="


@pytest.mark.parametrize("value, expected", [
    (INDEX_A, INDEX_A), ("abc-_", "abc-_"), (None, None), ("", None), ("x" * 1025, None), ("a\r\nX-Evil: 1", None),
    ("a b", None), (b"abc", None), (34, None)])
def test_storage_index_takes_bounded_base64_only(value, expected):
    assert vault.storage_index(value) == expected


def test_the_latest_index_vault_answered_with_goes_back_on_every_later_request(server):
    script = _Script([(200, {}), (200, {}, {"X-Vault-Index": INDEX_A}), (200, {}, {"X-Vault-Index": "not an index"}),
                      (200, {}, {"X-Vault-Index": INDEX_B})], final=(200, {}))
    c = _client([server(script)], retries=0)
    try:
        for _request in range(5):
            c.request("GET", "sys/health")
    finally:
        c.close()
    # none before an answer carried one; a malformed one is ignored; the newest wins
    assert _header(script, "X-Vault-Index") == [None, None, INDEX_A, INDEX_A, INDEX_B]
    assert _header(script, "X-Vault-Inconsistent") == [None, None] + ["forward-active-node"] * 3


def test_an_index_from_an_earlier_run_is_sent_from_the_first_request(server):
    script = _Script([], final=(200, {}))
    c = _client([server(script), server(_Script([]))], retries=0)
    c.expect_index(INDEX_A)
    c.expect_index("bad value")  # ignored: the good one stays
    try:
        c.request("POST", "auth/approle/login", consumes_secret=True)
    finally:
        c.close()
    # with several addresses a login also asks not to be forwarded: a stale standby redirects, never answers
    assert _header(script, "X-Vault-Index") == [INDEX_A]
    assert _header(script, "X-Vault-Inconsistent") == ["forward-active-node"]
    assert _header(script, "X-Vault-No-Request-Forwarding") == ["true"]


def test_an_error_answer_does_not_move_the_index(server):
    script = _Script([(200, {}, {"X-Vault-Index": INDEX_A}), (400, {"errors": ["bad"]}, {"X-Vault-Index": INDEX_B})],
                     final=(200, {}))
    c = _client([server(script)], retries=0)
    try:
        c.request("GET", "sys/health")
        with pytest.raises(MinibusError):
            c.request("GET", "sys/health")
    finally:
        c.close()
    assert c.index == INDEX_A


NOT_VALID = (400, {"errors": ["wrapping token is not valid or does not exist"]})


def test_a_wrapping_token_not_yet_on_a_stale_standby_is_looked_up_again(server, monkeypatch):
    monkeypatch.setattr(vault, "LOOKUP_RECHECK_PAUSES", (0.01, 0.01, 0.01, 0.01))
    script = _Script([NOT_VALID, NOT_VALID], final=(200, {"data": {"creation_path": "auth/approle/role/x/secret-id"}}))
    c = _client([server(script)], retries=0)
    try:
        assert vault.lookup_creation_path(c, "s.wrapping") == "auth/approle/role/x/secret-id"
    finally:
        c.close()
    assert script.hits == 3


def test_a_wrapping_token_that_stays_invalid_is_refused_after_the_rechecks(server, monkeypatch):
    monkeypatch.setattr(vault, "LOOKUP_RECHECK_PAUSES", (0.01, 0.01))
    script = _Script([], final=NOT_VALID)
    c = _client([server(script)], retries=0)
    try:
        with pytest.raises(WrappingTokenRejected):
            vault.lookup_creation_path(c, "s.wrapping")
    finally:
        c.close()
    assert script.hits == 3
