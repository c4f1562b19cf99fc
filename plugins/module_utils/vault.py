# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""The one Vault (and OpenBao) client of minibus.pki: HTTP, retries, error mapping and every call.

HTTP goes through hvac's RawAdapter (requests underneath), whose constructor and request() are the
same in Debian 12's hvac 0.11.2 and hvac 2.x; the Vault API paths are spelled out here rather than
taken from hvac's helpers, which differ between those versions.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import re
import socket
import threading
import time
import traceback

try:
    from urllib.parse import urlsplit
except ImportError:  # pragma: no cover - Python 2
    from urlparse import urlsplit  # pylint: disable=import-error

from .options import addresses_of
from .errors import (
    InvalidInput,
    MinibusError,
    SecretIdRejected,
    VaultUnreachable,
    WrappingTokenRejected,
    one_line,
    scrub,
)

# hvac (and requests under it) is imported only when a request is about to be sent: a run that finds
# the certificate good never pays for the import. Its presence is checked up front, so a host without
# it still gets Ansible's "missing required library" error before anything happens.
try:
    import importlib.util
    HVAC_IMPORT_ERROR = None if importlib.util.find_spec("hvac") else "No module named 'hvac'"
except (ImportError, ValueError):
    HVAC_IMPORT_ERROR = traceback.format_exc()

hvac = requests = None
_HTTPAdapterWithWatch = None

# Vault's answers here are a few KiB; anything this large is an attack or a misdirected URL.
MAX_ANSWER_BYTES = 1024 * 1024

# Answers of a node that cannot serve (sealed, a standby, not the active node): the next address may.
_NOT_ACTIVE = ("not the active node", "local node not active", "node is not active", "standby")
_PERF_STANDBY_STATUS = 473
# Asks a standby to answer itself (a redirect to the active node, or 503) instead of forwarding the request.
_NO_FORWARDING = "X-Vault-No-Request-Forwarding"
# OpenBao 2.7+ standbys (and Vault Enterprise performance standbys) answer reads from their own copy of the
# storage, which trails the active node: a secret id or token written a moment ago is "invalid" there. Each
# answer carries the storage index it reflects; sent back with forward-active-node, a standby that has not
# reached it forwards the request (or, asked not to forward, redirects) instead of answering from old data.
_INDEX = "X-Vault-Index"
_INCONSISTENT = "X-Vault-Inconsistent"
_INDEX_SHAPE = re.compile(r"\A[A-Za-z0-9+/=_-]{1,1024}\Z")  # opaque base64, bounded: nothing else is sent back


def storage_index(value):
    """value when it has the shape of a storage index (X-Vault-Index), else None."""
    if isinstance(value, str) and _INDEX_SHAPE.match(value):
        return value
    return None


# The in-flight request's watch, per thread: the connection classes below register their sockets there.
_CURRENT = threading.local()


def _import_hvac():
    global hvac, requests, _HTTPAdapterWithWatch  # pylint: disable=global-statement
    if requests is None:
        import hvac.adapters  # pylint: disable=redefined-outer-name
        import requests  # pylint: disable=redefined-outer-name
        _HTTPAdapterWithWatch = _watched_adapter_class(requests)
    return hvac, requests


class _Watch:
    """Shuts down the sockets of one request when its wall-clock deadline passes.

    A socket time-out bounds each read, so a server dripping a byte every few seconds would hold a
    request for ever; shutting the socket down ends connect, handshake, headers and body alike. The
    sockets are kept as duplicates of their descriptors: TLS wrapping detaches the original object,
    and a shutdown through any descriptor ends the connection.
    """

    def __init__(self):
        self.fired = False
        self._sockets = []
        self._lock = threading.Lock()

    def add(self, sock):
        try:
            duplicate = socket.fromfd(sock.fileno(), sock.family, sock.type)
        except (OSError, ValueError, AttributeError):
            return
        with self._lock:
            self._sockets.append(duplicate)
            if self.fired:
                _shutdown(duplicate)

    def fire(self):
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shutdown(sock)

    def close(self):
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets = []


def _shutdown(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _watch_socket(sock):
    watch = getattr(_CURRENT, "watch", None)
    if watch is not None and sock is not None:
        watch.add(sock)


def _watched_adapter_class(requests_module):
    """A requests HTTPAdapter whose connections register their sockets with the current _Watch."""
    import urllib3.connectionpool as pools  # pylint: disable=import-outside-toplevel
    import urllib3.poolmanager as managers  # pylint: disable=import-outside-toplevel

    def watched(connection_class):
        class Watched(connection_class):
            def _new_conn(self):
                sock = super(Watched, self)._new_conn()
                _watch_socket(sock)
                return sock

            def putrequest(self, *args, **kwargs):
                _watch_socket(getattr(self, "sock", None))  # a kept-alive connection
                return super(Watched, self).putrequest(*args, **kwargs)
        return Watched

    class HTTPPool(pools.HTTPConnectionPool):
        ConnectionCls = watched(pools.HTTPConnectionPool.ConnectionCls)

    class HTTPSPool(pools.HTTPSConnectionPool):
        ConnectionCls = watched(pools.HTTPSConnectionPool.ConnectionCls)

    classes = {"http": HTTPPool, "https": HTTPSPool}

    class HTTPAdapterWithWatch(requests_module.adapters.HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super(HTTPAdapterWithWatch, self).init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = classes

        def proxy_manager_for(self, *args, **kwargs):
            manager = super(HTTPAdapterWithWatch, self).proxy_manager_for(*args, **kwargs)
            if isinstance(manager, managers.ProxyManager):
                manager.pool_classes_by_scheme = classes
            return manager

    return HTTPAdapterWithWatch


def _session_that_never_redirects():
    """A requests Session that cannot follow a redirect, whatever allow_redirects hvac passes.

    (max_redirects=0 would not do: requests then raises TooManyRedirects even with allow_redirects=False,
    and the 3xx answer, needed for a clear sentence, is gone.)
    """
    class NeverRedirects(requests.Session):
        def resolve_redirects(self, *args, **kwargs):  # pylint: disable=unused-argument
            return iter(())
    return NeverRedirects()


def preload():
    """Import the client libraries now (before a privilege drop: the account may not read their files)."""
    try:
        _import_hvac()
        import urllib3.connectionpool  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import
        import urllib3.poolmanager  # noqa: F401 pylint: disable=import-outside-toplevel,unused-import
    except ImportError:  # reported with its own sentence where the client is built
        pass


class Session:
    """A token and whether this process obtained it (and so must revoke it)."""

    def __init__(self, token, owned, accessor=None, policies=None, lease_duration=None):
        self.token = token
        self.owned = owned
        self.accessor = accessor
        self.policies = policies or []
        self.lease_duration = lease_duration


class _Failed(Exception):
    """One attempt at one address failed: the error and what may follow.

    secret_safe: Vault cannot have acted on it (a single-use secret sent with it is unspent).
    next_node: this node cannot serve (unreachable, TLS, sealed, standby, redirect): try the next address.
    repeat: a later round of retries may help.
    """

    def __init__(self, error, secret_safe, next_node=False, repeat=True):
        super(_Failed, self).__init__(error.message)
        self.error = error
        self.secret_safe = secret_safe
        self.next_node = next_node
        self.repeat = repeat
        error.not_processed = secret_safe and (next_node or error.status is None)


def address_order(addresses, preferred):
    """The order to try the addresses in: the one that served last first, then the others as configured."""
    if preferred in addresses:
        return [preferred] + [a for a in addresses if a != preferred]
    return list(addresses)


def run_budget(timeout, retries, address_count, total_timeout=None):
    """Seconds a whole run may spend talking to Vault: total_timeout, or timeout x (retries+1) x addresses."""
    if total_timeout:
        return total_timeout
    return timeout * (retries + 1) * max(address_count, 1)


def redirect_target(location, address):
    """The scheme and host (no path, query, user or token) a Location header points at."""
    try:
        parts = urlsplit((location or "").strip())
        base = urlsplit(address)
        scheme = parts.scheme or base.scheme
        host = parts.hostname or base.hostname or "?"
        port = parts.port if parts.hostname else (base.port if not parts.scheme else None)
    except ValueError:
        return "an unreadable address"
    if ":" in host:
        host = "[%s]" % host
    return "%s://%s%s" % (scheme, host, ":%d" % port if port else "")


def redirect_sentence(address, location):
    return ("Vault at %s answered with a redirect to %s, which minibus.pki never follows: set url to the node that "
            "serves (or list every node in url); nothing was sent there." % (address, redirect_target(location, address)))


class VaultClient:
    """HTTP to a Vault server (one or several addresses of one cluster): deadlines, failover, retries, clear errors.

    Never follows a redirect. Each request has a wall-clock deadline (timeout) covering connect, TLS, headers
    and body; the whole client (one module run, lookup call or renewer run) has a budget (total_timeout).
    """

    def __init__(self, url, ca_cert=None, validate_certs=True, namespace=None, timeout=30, retries=3,
                 backoff=0.5, total_timeout=None):
        _import_hvac()
        self.addresses = addresses_of(url)
        if not self.addresses:
            raise InvalidInput("No Vault address: set url, or VAULT_ADDR (or BAO_ADDR) in the environment.")
        self._preferred = self.addresses[0]
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.budget = run_budget(timeout, retries, len(self.addresses), total_timeout)
        self._budget_end = None
        self._secrets = set()
        verify = (ca_cert or True) if validate_certs else False
        self._session = _session_that_never_redirects()
        self._session.verify = verify
        watched = _HTTPAdapterWithWatch()
        self._session.mount("https://", watched)
        self._session.mount("http://", watched)
        self._adapters = dict(
            (address, hvac.adapters.RawAdapter(base_uri=address, token=None, verify=verify, timeout=timeout,
                                               namespace=namespace or None, session=self._session,
                                               allow_redirects=False))
            for address in self.addresses)
        self.request_count = 0
        self.index = None

    def expect_index(self, value):
        """Ask every node to reflect at least this storage index (one seen by an earlier run); bad shapes are ignored."""
        self.index = storage_index(value) or self.index

    @property
    def url(self):
        """The address that served last (or the first configured)."""
        return self._preferred

    def remember_secret(self, *secrets):
        """Secrets that must never appear in an error message raised by this client."""
        self._secrets.update(s for s in secrets if s)

    def close(self):
        self._session.close()

    def _remaining(self):
        if self._budget_end is None:
            self._budget_end = time.monotonic() + self.budget
        return self._budget_end - time.monotonic()

    def request(self, method, path, token=None, data=None, wrap_ttl=None, consumes_secret=False, what=None):
        """Send one request; return the decoded JSON body (None for 204).

        consumes_secret marks a request that uses up something single-use (an AppRole login with a
        secret id, an unwrap). Such a request is retried, or sent to another address, only when Vault
        cannot have acted on it: the connection was never made, the TLS handshake failed, Vault answered
        429, is sealed, is a standby that does not serve, or (asked not to forward, which such a request to
        several addresses is) redirected. Anything else (the deadline passing while waiting for the answer, a
        dropped connection, a 500, 502 or 504, a standby's redirect after forwarding) may mean the secret id is
        already spent, and a blind retry would only hide that.
        """
        headers = self._headers(token, wrap_ttl)
        if consumes_secret and len(self.addresses) > 1:
            # A standby that forwards to the active node answers with a redirect when the forwarding fails, even
            # after the active node applied the request; unforwarded, a standby's answer proves nothing was done,
            # and the next address (the active node) is asked directly.
            headers[_NO_FORWARDING] = "true"
        what = what or "%s %s" % (method, path)
        attempt = 0
        while True:
            attempt += 1
            served, result, failed, tried = self._try_each_address(method, path, headers, data, what, consumes_secret)
            if served:
                return result
            error = self._last_word(failed, tried, what)
            if not failed.repeat or attempt > self.retries:
                raise error
            self._back_off(error, attempt)

    def _headers(self, token, wrap_ttl):
        headers = {}
        if token:
            headers["X-Vault-Token"] = token
            self.remember_secret(token)
        if wrap_ttl:
            headers["X-Vault-Wrap-TTL"] = str(wrap_ttl)
        if self.index:
            headers[_INDEX] = self.index
            headers[_INCONSISTENT] = "forward-active-node"
        return headers

    def _try_each_address(self, method, path, headers, data, what, consumes_secret):
        """One round over the addresses, preferred first: (True, answer, None, tried) or (False, None, _Failed, tried).

        The round stops early when the failure says the next node would not do better, and raises when
        a single-use secret may already be spent.
        """
        failed, tried = None, []
        for address in address_order(self.addresses, self._preferred):
            try:
                result = self._request_at(address, method, path, headers, data, what)
            except _Failed as exc:
                failed = exc
            else:
                self._preferred = address
                return True, result, None, tried
            tried.append(address)
            if consumes_secret and not failed.secret_safe:
                raise self._spent(failed.error)
            if not failed.next_node:
                break
        return False, None, failed, tried

    @staticmethod
    def _last_word(failed, tried, what):
        """The round's error; after several addresses, one sentence naming them all."""
        error = failed.error
        if len(tried) > 1:
            error = type(error)("None of the Vault addresses %s could serve %s; the last said: %s"
                                % (", ".join(tried), what, error.message), error.status, error.vault_errors)
            error.not_processed = failed.error.not_processed
        return error

    def pause_if_budget_allows(self, pause):
        """Sleep pause seconds and return True, or return False at once when the run's budget cannot cover it."""
        if self._remaining() <= pause:
            return False
        time.sleep(pause)
        return True

    def _back_off(self, error, attempt):
        """Sleep before the next round, or raise error when the run's total_timeout cannot cover the pause."""
        if not self.pause_if_budget_allows(min(self.backoff * (2 ** (attempt - 1)), 5.0)):
            used_up = type(error)(error.message.rstrip(".") + "; not retried: the run's total_timeout (%d s) is "
                                  "used up." % self.budget, error.status, error.vault_errors)
            used_up.not_processed = error.not_processed
            raise used_up

    @staticmethod
    def _spent(error):
        spent = type(error)(error.message.rstrip(".") + "; it was not retried because the single-use secret may "
                            "already be spent.", error.status, error.vault_errors)
        spent.not_processed = False
        return spent

    def _request_at(self, address, method, path, headers, data, what):
        """One attempt at one address, inside the deadline; the decoded answer, or _Failed / MinibusError."""
        remaining = self._remaining()
        if remaining <= 0:
            raise _Failed(VaultUnreachable(
                "The Vault requests of this run used up total_timeout (%d s) before %s: check Vault's health and "
                "the network, or raise total_timeout." % (self.budget, what)), secret_safe=True, repeat=False)
        deadline = min(float(self.timeout), remaining)
        by_budget = remaining < self.timeout - 1  # (the derived budget is whole timeouts: not cut by a hair)
        watch = _Watch()
        _CURRENT.watch = watch
        timer = threading.Timer(deadline, watch.fire)
        timer.daemon = True
        timer.start()
        try:
            self.request_count += 1
            response = self._adapters[address].request(
                method, "/v1/" + path, headers=headers, json=data, raise_exception=False, stream=True,
            )
            body = self._read_capped(response, what, address)
        except (requests.exceptions.RequestException, ValueError, OSError) as exc:
            if watch.fired:
                raise self._deadline_failure(address, what, deadline, by_budget)
            raise self._transport_failure(address, what, exc)
        except MinibusError:
            if watch.fired:
                raise self._deadline_failure(address, what, deadline, by_budget)
            raise
        finally:
            timer.cancel()
            _CURRENT.watch = None
            watch.close()
        if watch.fired:  # a shut-down socket can also look like an answer that simply ended
            raise self._deadline_failure(address, what, deadline, by_budget)
        return self._decode(address, response, body, path, what)

    def _deadline_failure(self, address, what, deadline, by_budget):
        if by_budget:
            return _Failed(VaultUnreachable(
                "Vault at %s did not answer %s within the %d s left of total_timeout (%d s for the whole run): check "
                "Vault's load and the network, or raise total_timeout." % (address, what, round(deadline), self.budget)),
                secret_safe=False, repeat=False)
        return _Failed(VaultUnreachable(
            "Vault at %s did not answer %s within %d s (timeout): check Vault's load and the network, or raise "
            "timeout." % (address, what, round(deadline))), secret_safe=False)

    def _transport_failure(self, address, what, exc):
        if isinstance(exc, requests.exceptions.SSLError):
            return _Failed(VaultUnreachable(self.scrub(
                "TLS verification of Vault at %s failed (%s): set ca_cert (or VAULT_CACERT) to the CA "
                "bundle that signed Vault's certificate." % (address, _short_reason(exc)))),
                secret_safe=True, next_node=True, repeat=False)  # no request crosses a failed handshake
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return _Failed(VaultUnreachable(
                "Could not connect to Vault at %s (connection timed out): check url (or VAULT_ADDR) "
                "and that Vault is running and reachable." % address), secret_safe=True, next_node=True)
        if isinstance(exc, requests.exceptions.ConnectionError):
            if _connection_never_made(exc):
                return _Failed(VaultUnreachable(
                    "Could not connect to Vault at %s (%s): check url (or VAULT_ADDR) and that Vault is "
                    "running and reachable." % (address, _short_reason(exc))), secret_safe=True, next_node=True)
            return _Failed(VaultUnreachable(
                "The connection to Vault at %s broke during %s (%s): check Vault's health and any proxy, "
                "then run again." % (address, what, _short_reason(exc))), secret_safe=False)
        if isinstance(exc, requests.exceptions.Timeout):
            return _Failed(VaultUnreachable(
                "Vault at %s did not answer %s within %d s (timeout): check Vault's load and the network, or raise "
                "timeout." % (address, what, self.timeout)), secret_safe=False)
        if isinstance(exc, ValueError):  # requests rejects malformed URLs with ValueError subclasses
            raise MinibusError("The Vault address %s is not usable (%s): give it as https://host:8200."
                               % (address, _short_reason(exc)))
        return _Failed(VaultUnreachable(  # broken encodings, a socket error, ...
            "The request to Vault at %s for %s failed (%s): check url and any proxy in between."
            % (address, what, _short_reason(exc))), secret_safe=False)

    def _decode(self, address, response, body, path, what):
        status = response.status_code
        unforwarded = bool(getattr(getattr(response, "request", None), "headers", {}).get(_NO_FORWARDING))
        if 300 <= status < 400:
            # Never followed: the body and the token would go wherever Location says, http:// included. A
            # forwarding standby also redirects when its forwarding failed, perhaps after the active node acted.
            raise _Failed(MinibusError(self.scrub(redirect_sentence(address, response.headers.get("Location"))),
                                       status), secret_safe=unforwarded, next_node=True, repeat=False)
        if status < 400:
            self.index = storage_index(response.headers.get(_INDEX)) or self.index
            if status == 204 or not body:
                return None
            try:
                return json.loads(body.decode("utf-8"))
            except ValueError:
                raise MinibusError(
                    "Vault at %s answered %s with something that is not JSON: check that url points "
                    "at Vault's API (not a proxy or web page)." % (address, what))
        errors = _errors_of(body)
        error = self._error_for(status, errors, path, what, address)
        lowered = " ".join(errors).lower()
        if status in (429, 503, _PERF_STANDBY_STATUS):
            # (a standby's "no active Vault instance found" also follows a failed forwarding)
            after_forwarding = status == 503 and "no active" in lowered and not unforwarded
            raise _Failed(error, secret_safe=not after_forwarding, next_node=True)
        if status >= 500 and any(marker in lowered for marker in _NOT_ACTIVE):
            raise _Failed(error, secret_safe=True, next_node=True)
        if status >= 500:
            # 500/501: Vault may have acted; 502/504: a proxy may have passed the request on.
            raise _Failed(error, secret_safe=status not in (500, 501, 502, 504))
        raise error

    def _read_capped(self, response, what, address=None):
        """The body, read up to MAX_ANSWER_BYTES: a larger answer is refused before it fills memory."""
        try:
            declared = int(response.headers.get("Content-Length") or 0)
        except ValueError:
            declared = 0
        chunks, size = [], 0
        try:
            if declared <= MAX_ANSWER_BYTES:
                for chunk in response.iter_content(65536):
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        break
                    chunks.append(chunk)
        finally:
            response.close()
        if declared > MAX_ANSWER_BYTES or size > MAX_ANSWER_BYTES:
            raise MinibusError("Vault at %s answered %s with more than %d KiB, far more than any real answer: "
                               "refused; check that url points at Vault's API, not a proxy or a file server."
                               % (address or self.url, what, MAX_ANSWER_BYTES // 1024))
        return b"".join(chunks)

    def scrub(self, text):
        """text without any secret this client has seen."""
        return scrub(text, self._secrets)

    def _error_for(self, status, errors, path, what, address=None):
        """Turn one Vault error answer into one sentence that says what to do."""
        address = address or self.url
        detail = self.scrub(one_line("; ".join(errors))) if errors else "HTTP %d" % status
        lowered = detail.lower()
        if status == 503 and "sealed" in lowered:
            return VaultUnreachable("Vault at %s is sealed: unseal it, then run again." % address, status, errors)
        if status == _PERF_STANDBY_STATUS or (status >= 500 and any(m in lowered for m in _NOT_ACTIVE)):
            return VaultUnreachable("Vault at %s is a standby that does not serve %s (%s): list the active node (or "
                                    "every node) in url." % (address, what, detail), status, errors)
        if "invalid role or secret id" in lowered or "invalid secret id" in lowered:
            return SecretIdRejected(
                "AppRole login was refused: the role id is wrong, or the secret id was already used, has expired "
                "or was destroyed; get a new response-wrapped secret id (the next Ansible run does that).",
                status, errors)
        if "wrapping token is not valid" in lowered:
            return WrappingTokenRejected(
                "The wrapping token is not valid: it was already unwrapped, has expired or never existed; mint a "
                "new wrapped secret id, and if nobody here unwrapped it, treat it as intercepted.", status, errors)
        if status == 403:
            return MinibusError(
                "Vault denied permission on %s (%s): the token is expired or revoked, or its policies do not "
                "allow this path; check the token and its policies." % (path, detail), status, errors)
        if status == 404 or "no handler for route" in lowered:
            return MinibusError(
                "Vault has nothing at %s (%s): check the mount point and role name options." % (path, detail),
                status, errors)
        if status >= 500:
            return VaultUnreachable(
                "Vault at %s failed on %s (%s): check Vault's health and logs, then run again."
                % (address, what, detail), status, errors)
        return MinibusError("Vault refused %s (%s)." % (what, detail), status, errors)


def _errors_of(body):
    try:
        errors = json.loads(body.decode("utf-8")).get("errors")
    except (ValueError, AttributeError):
        errors = None
    return [str(e) for e in errors] if errors else []


def _connection_never_made(exc):
    """True when requests failed before any byte reached Vault (refused, DNS, unreachable)."""
    reason = repr(exc)
    return any(marker in reason for marker in (
        "NewConnectionError", "Connection refused", "Name or service not known", "nodename nor servname",
        "No route to host", "Network is unreachable", "Failed to resolve", "getaddrinfo failed",
        "Temporary failure in name resolution",
    ))


def _short_reason(exc):
    text = str(exc)
    for pattern, label in (
        (r"Connection refused", "connection refused"),
        (r"Name or service not known|Failed to resolve|Temporary failure in name resolution|nodename nor servname",
         "host name not found"),
        (r"CERTIFICATE_VERIFY_FAILED[^'\")]*", None),
        (r"WRONG_VERSION_NUMBER|wrong version number|record layer failure",
         "the server does not speak TLS on that port"),
        (r"No route to host", "no route to host"),
        (r"Network is unreachable", "network unreachable"),
        (r"Invalid URL|No connection adapters|No host supplied|Invalid port|Failed to parse", "malformed URL"),
    ):
        match = re.search(pattern, text)
        if match:
            return label or one_line(match.group(0)).lower()
    return type(exc).__name__


def client_from_options(params):
    """The one way plugins build a VaultClient: from the shared connection options (validated already)."""
    return VaultClient(params["url"], ca_cert=params.get("ca_cert"),
                       validate_certs=params.get("validate_certs", True) is not False,
                       namespace=params.get("namespace"), timeout=params.get("timeout") or 30,
                       retries=3 if params.get("retries") is None else params["retries"],
                       total_timeout=params.get("total_timeout") or None)


# --- AppRole and wrapping -------------------------------------------------------------------

def secret_id_path(auth_mount_point, approle_name):
    return "auth/%s/role/%s/secret-id" % (auth_mount_point, approle_name)


def approle_login(client, role_id, secret_id, auth_mount_point="approle"):
    """AppRole login: trade role id + single-use secret id for a token."""
    client.remember_secret(secret_id)
    body = client.request("POST", "auth/%s/login" % auth_mount_point,
                          data={"role_id": role_id, "secret_id": secret_id},
                          consumes_secret=True, what="the AppRole login")
    auth = (body or {}).get("auth") or {}
    if not auth.get("client_token"):
        raise MinibusError("Vault answered the AppRole login without a token: check auth_mount_point.")
    client.remember_secret(auth["client_token"])
    return Session(auth["client_token"], owned=True, accessor=auth.get("accessor"),
                   policies=auth.get("policies"), lease_duration=auth.get("lease_duration"))


def check_creation_path(actual, expected=None, pattern=None):
    """Refuse a wrapping token created anywhere but where we expect it."""
    if expected is not None and actual == expected:
        return
    if expected is None and pattern is not None and re.fullmatch(pattern, actual or ""):
        return
    raise WrappingTokenRejected(
        "The wrapping token was created at %r, not at %r: refusing to unwrap it; this may mean it was "
        "intercepted and re-wrapped, so mint a new one and investigate." % (actual, expected or pattern))


# A wrapping token minted through one node (the controller's mint) may not have reached a standby that
# serves reads yet: tens of ms, longer while a restarted node catches up, and the client has no storage
# index for a write it did not make. The lookup spends nothing, so "not valid" is asked again for about
# 3 s before it is believed; a token that really was unwrapped or never existed is refused after that.
LOOKUP_RECHECK_PAUSES = (0.2, 0.4, 0.8, 1.6)


def lookup_creation_path(client, wrapping_token):
    """Where Vault says the wrapped response was created (sys/wrapping/lookup; does not spend the token)."""
    client.remember_secret(wrapping_token)
    if not isinstance(wrapping_token, str) or not wrapping_token.strip() or any(c.isspace() for c in wrapping_token):
        raise WrappingTokenRejected("The wrapping token is empty or malformed: pass the token string "
                                    "the lookup or Vault returned.")
    for pause in LOOKUP_RECHECK_PAUSES + (None,):
        try:
            info = client.request("POST", "sys/wrapping/lookup", data={"token": wrapping_token},
                                  what="the wrapping token lookup")
        except WrappingTokenRejected:
            if pause is None or not client.pause_if_budget_allows(pause):
                raise
        else:
            return ((info or {}).get("data") or {}).get("creation_path")


def unwrap(client, wrapping_token, expected_creation_path=None, creation_path_pattern=None,
           known_creation_path=None):
    """Check where a wrapping token was created, then unwrap it. Returns (data, creation_path).

    The creation path is looked up in Vault (sys/wrapping/lookup), unless known_creation_path is
    given: that is only for a token this process minted a moment ago, whose wrap_info came straight
    from Vault in the minting answer and never passed through other hands.
    """
    creation_path = known_creation_path
    if creation_path is None:
        creation_path = lookup_creation_path(client, wrapping_token)
    check_creation_path(creation_path, expected_creation_path, creation_path_pattern)
    body = client.request("POST", "sys/wrapping/unwrap", token=wrapping_token,
                          consumes_secret=True, what="the unwrap")
    return (body or {}).get("data") or {}, creation_path


def unwrap_secret_id(client, wrapping_token, auth_mount_point="approle", approle_name=None,
                     known_creation_path=None):
    """Unwrap a response-wrapped AppRole secret id after checking it was minted for our role.

    approle_name is required: any role's secret-id path would let a token minted for another
    AppRole role on the mount (with other policies) pass.
    """
    if not approle_name:
        raise InvalidInput("Unwrapping a secret id needs approle_name: a wrapping token is accepted only when it "
                           "was minted for that AppRole role.")
    expected = secret_id_path(auth_mount_point, approle_name)
    data, _path = unwrap(client, wrapping_token, expected, None, known_creation_path)
    if not data.get("secret_id"):
        raise WrappingTokenRejected("The unwrapped response holds no secret id: mint the wrapped secret id at "
                                    "auth/<mount>/role/<name>/secret-id.")
    client.remember_secret(data["secret_id"])
    return data


def mint_wrapped_secret_id(client, token, approle_name, auth_mount_point="approle", wrap_ttl="120s",
                           metadata=None, cidr_list=None):
    """Create a secret id that only travels response-wrapped. Returns wrap_info (token, creation_path, ttl)."""
    data = {}
    if metadata:
        data["metadata"] = json.dumps(metadata, sort_keys=True)
    if cidr_list:
        data["cidr_list"] = list(cidr_list)
    body = client.request("POST", secret_id_path(auth_mount_point, approle_name), token=token, data=data,
                          wrap_ttl=wrap_ttl, what="minting a wrapped secret id for %s" % approle_name)
    wrap_info = (body or {}).get("wrap_info") or {}
    if not wrap_info.get("token"):
        raise MinibusError("Vault did not wrap the secret id response: check that no proxy strips the "
                           "X-Vault-Wrap-TTL header.")
    client.remember_secret(wrap_info["token"])
    return wrap_info


def mint_bootstrap_secret_id(client, token, approle_name, bootstrap_mount_point="minibus-bootstrap",
                             wrap_ttl="120s", metadata=None, cidr_list=None):
    """The broker's mint: a wrapped secret id on the bootstrap mount, the only one hosts accept at bootstrap."""
    try:
        return mint_wrapped_secret_id(client, token, approle_name, bootstrap_mount_point, wrap_ttl, metadata,
                                      cidr_list)
    except MinibusError as exc:
        if exc.status not in (403, 404):
            raise
        raise MinibusError(
            "Vault %s minting a bootstrap secret id at %s (HTTP %d): the broker token needs the minibus-broker "
            "policy, and a Vault bootstrapped by an older minibus.pki has no %s mount yet, so re-run "
            "vault_bootstrap.yml." % ("denied permission for" if exc.status == 403 else "has nothing for",
                                      secret_id_path(bootstrap_mount_point, approle_name), exc.status,
                                      bootstrap_mount_point), exc.status, exc.vault_errors)


def revoke_self(client, token):
    client.request("POST", "auth/token/revoke-self", token=token, what="revoking the token")


def renewal_due(token_info):
    """Whether a token (auth/token/lookup-self data) is periodic, renewable and below half its period.

    A periodic token (the broker's, made with -period) lives only while it is renewed within each
    period; renewing at half the period keeps it alive for as long as it is used at least that often.
    """
    info = token_info or {}
    try:
        period = int(info.get("period") or 0)
        ttl = int(info.get("ttl") or 0)
    except (TypeError, ValueError):
        return False
    return period > 0 and bool(info.get("renewable")) and ttl < period / 2.0


def renew_self_if_due(client, token):
    """Renew a periodic token (auth/token/renew-self) when below half its period. Returns True if renewed.

    Looks the token up first (auth/token/lookup-self, which the default policy allows); any other
    token is left alone.
    """
    body = client.request("GET", "auth/token/lookup-self", token=token, what="looking up the token")
    if not renewal_due((body or {}).get("data")):
        return False
    client.request("POST", "auth/token/renew-self", token=token, data={}, what="renewing the token")
    return True


# --- PKI --------------------------------------------------------------------------------------

# The request names CN and SANs (as a plain curl of the sign endpoint does) while a role with the default
# use_csr_common_name/use_csr_sans takes them from the CSR: the same names, so this is only noise.
_NOISE_WARNING = re.compile(r"field was provided but the role is set with .use_csr_")


def _pki_request(client, token, engine_mount_point, role_name, verb, data):
    path = "%s/%s/%s" % (engine_mount_point, verb, role_name)
    try:
        body = client.request("POST", path, token=token, data=data,
                              what="the certificate request to %s" % path)
    except MinibusError as exc:
        raise _explain_pki_refusal(exc, path, data)
    result = dict((body or {}).get("data") or {})
    result["warnings"] = [client.scrub(w) for w in (body or {}).get("warnings") or []
                          if not _NOISE_WARNING.search(w)]
    if not result.get("certificate"):
        raise MinibusError("Vault's answer from %s holds no certificate." % path)
    return result


def _explain_pki_refusal(exc, path, data):
    detail = one_line("; ".join(exc.vault_errors)) if exc.vault_errors else ""
    lowered = detail.lower()
    if exc.status == 400 and "not allowed by this role" in lowered:
        return MinibusError("The PKI role at %s does not allow the name %r (%s): use a name matching the "
                            "role's allowed_domains." % (path, data.get("common_name"), detail), exc.status)
    if exc.status == 400 and ("key" in lowered and ("type" in lowered or "bits" in lowered)):
        return MinibusError("The PKI role at %s refused the key (%s): set key_type/key_bits to what the "
                            "role allows." % (path, detail), exc.status)
    return exc


def sign_csr(client, token, engine_mount_point, role_name, csr_pem, common_name, alt_names=None, ip_sans=None,
             ttl=None):
    """Sign: POST the CSR to <mount>/sign/<role>; the private key never leaves the host."""
    data = {"csr": csr_pem, "common_name": common_name, "format": "pem"}
    data.update(_san_fields(alt_names, ip_sans, ttl))
    return _pki_request(client, token, engine_mount_point, role_name, "sign", data)


def issue(client, token, engine_mount_point, role_name, common_name, key_type, key_bits, alt_names=None,
          ip_sans=None, ttl=None):
    """Issue: Vault makes the key. Type and size are always named (a role with key_type any needs them)."""
    data = {"common_name": common_name, "format": "pem", "private_key_format": "pkcs8",
            "key_type": key_type, "key_bits": key_bits}
    data.update(_san_fields(alt_names, ip_sans, ttl))
    result = _pki_request(client, token, engine_mount_point, role_name, "issue", data)
    client.remember_secret(result.get("private_key"))
    return result


def _san_fields(alt_names, ip_sans, ttl):
    fields = {}
    if alt_names:
        fields["alt_names"] = ",".join(alt_names)
    if ip_sans:
        fields["ip_sans"] = ",".join(ip_sans)
    if ttl:
        fields["ttl"] = str(ttl)
    return fields
