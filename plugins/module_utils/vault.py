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
import time
import traceback

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

# Vault's answers here are a few KiB; anything this large is an attack or a misdirected URL.
MAX_ANSWER_BYTES = 1024 * 1024


def _import_hvac():
    global hvac, requests  # pylint: disable=global-statement
    if requests is None:
        import hvac.adapters  # pylint: disable=redefined-outer-name
        import requests  # pylint: disable=redefined-outer-name
    return hvac, requests


def preload():
    """Import the client libraries now (before a privilege drop: the account may not read their files)."""
    try:
        _import_hvac()
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


class VaultClient:
    """HTTP to one Vault server, with retries, clear errors and no secret in any message."""

    def __init__(self, url, ca_cert=None, validate_certs=True, namespace=None, timeout=30, retries=3,
                 backoff=0.5):
        _import_hvac()
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        self._secrets = set()
        verify = (ca_cert or True) if validate_certs else False
        self._adapter = hvac.adapters.RawAdapter(
            base_uri=self.url, token=None, verify=verify, timeout=timeout, namespace=namespace or None,
        )
        self.request_count = 0

    def remember_secret(self, *secrets):
        """Secrets that must never appear in an error message raised by this client."""
        self._secrets.update(s for s in secrets if s)

    def close(self):
        self._adapter.close()

    def request(self, method, path, token=None, data=None, wrap_ttl=None, consumes_secret=False, what=None):
        """Send one request; return the decoded JSON body (None for 204).

        consumes_secret marks a request that uses up something single-use (an AppRole login with a
        secret id, an unwrap). Such a request is retried only when Vault cannot have acted on it:
        the connection was never made, Vault answered 429, or Vault is sealed. Anything else (a
        time-out while waiting for the answer, a dropped connection, a 500) may mean the secret id
        is already spent, and a blind retry would only hide that.
        """
        headers = {}
        if token:
            headers["X-Vault-Token"] = token
            self.remember_secret(token)
        if wrap_ttl:
            headers["X-Vault-Wrap-TTL"] = str(wrap_ttl)
        what = what or "%s %s" % (method, path)
        attempt = 0
        while True:
            attempt += 1
            retry_safe, error = True, None
            try:
                self.request_count += 1
                response = self._adapter.request(
                    method, "/v1/" + path, headers=headers, json=data, raise_exception=False, stream=True,
                )
                body = self._read_capped(response, what)
            except requests.exceptions.SSLError as exc:
                error = VaultUnreachable(self.scrub(
                    "TLS verification of Vault at %s failed (%s): set ca_cert (or VAULT_CACERT) to the CA "
                    "bundle that signed Vault's certificate." % (self.url, _short_reason(exc))))
                error.not_processed = True  # no request crosses a failed handshake
                raise error
            except requests.exceptions.ConnectTimeout:
                error = VaultUnreachable(
                    "Could not connect to Vault at %s (connection timed out): check url (or VAULT_ADDR) "
                    "and that Vault is running and reachable." % self.url)
            except requests.exceptions.ConnectionError as exc:
                never_sent = _connection_never_made(exc)
                retry_safe = never_sent
                if never_sent:
                    error = VaultUnreachable(
                        "Could not connect to Vault at %s (%s): check url (or VAULT_ADDR) and that Vault is "
                        "running and reachable." % (self.url, _short_reason(exc)))
                else:
                    error = VaultUnreachable(
                        "The connection to Vault at %s broke during %s (%s): check Vault's health and any proxy, "
                        "then run again." % (self.url, what, _short_reason(exc)))
            except requests.exceptions.Timeout:
                retry_safe = False
                error = VaultUnreachable(
                    "Vault at %s did not answer %s in time: raise timeout or check Vault's load." % (self.url, what))
            except ValueError as exc:  # requests rejects malformed URLs with ValueError subclasses
                raise MinibusError("The Vault address %s is not usable (%s): give it as https://host:8200."
                                   % (self.url, _short_reason(exc)))
            except requests.exceptions.RequestException as exc:  # redirects, broken encodings, ...
                retry_safe = False
                error = VaultUnreachable("The request to Vault at %s for %s failed (%s): check url and any proxy "
                                         "in between." % (self.url, what, _short_reason(exc)))
            else:
                if response.status_code < 400:
                    if response.status_code == 204 or not body:
                        return None
                    try:
                        return json.loads(body.decode("utf-8"))
                    except ValueError:
                        raise MinibusError(
                            "Vault at %s answered %s with something that is not JSON: check that url points "
                            "at Vault's API (not a proxy or web page)." % (self.url, what))
                errors = _errors_of(body)
                if response.status_code == 429 or response.status_code == 503:
                    retry_safe = True
                elif response.status_code >= 500:
                    retry_safe = response.status_code not in (500, 501)
                else:
                    raise self._error_for(response.status_code, errors, path, what)
                error = self._error_for(response.status_code, errors, path, what)
            error.not_processed = retry_safe and (error.status in (None, 429, 503))
            if consumes_secret and not retry_safe:
                if isinstance(error, MinibusError):
                    error = type(error)(error.message.rstrip(".") + "; it was not retried because the "
                                        "single-use secret may already be spent.", error.status, error.vault_errors)
                raise error
            if attempt > self.retries:
                raise error
            time.sleep(min(self.backoff * (2 ** (attempt - 1)), 5.0))

    def _read_capped(self, response, what):
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
                               % (self.url, what, MAX_ANSWER_BYTES // 1024))
        return b"".join(chunks)

    def scrub(self, text):
        """text without any secret this client has seen."""
        return scrub(text, self._secrets)

    def _error_for(self, status, errors, path, what):
        """Turn one Vault error answer into one sentence that says what to do."""
        detail = self.scrub(one_line("; ".join(errors))) if errors else "HTTP %d" % status
        lowered = detail.lower()
        if status == 503 and "sealed" in lowered:
            return VaultUnreachable("Vault at %s is sealed: unseal it, then run again." % self.url, status, errors)
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
                % (self.url, what, detail), status, errors)
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
                       retries=3 if params.get("retries") is None else params["retries"])


# --- AppRole and wrapping -------------------------------------------------------------------

def secret_id_path(auth_mount_point, approle_name):
    return "auth/%s/role/%s/secret-id" % (auth_mount_point, approle_name)


def approle_login(client, role_id, secret_id, auth_mount_point="approle"):
    """User story 1: trade role id + single-use secret id for a token."""
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


def lookup_creation_path(client, wrapping_token):
    """Where Vault says the wrapped response was created (sys/wrapping/lookup; does not spend the token)."""
    client.remember_secret(wrapping_token)
    if not isinstance(wrapping_token, str) or not wrapping_token.strip() or any(c.isspace() for c in wrapping_token):
        raise WrappingTokenRejected("The wrapping token is empty or malformed: pass the token string "
                                    "the lookup or Vault returned.")
    info = client.request("POST", "sys/wrapping/lookup", data={"token": wrapping_token},
                          what="the wrapping token lookup")
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


def revoke_self(client, token):
    client.request("POST", "auth/token/revoke-self", token=token, what="revoking the token")


def authenticate(client, params):
    """Turn the shared authentication options into a Session (one file per method: _auth_<name>.py)."""
    # Imported here: each method's file imports this module.
    from . import _authenticator  # pylint: disable=import-outside-toplevel
    return _authenticator.authenticate(client, params)


# --- PKI --------------------------------------------------------------------------------------

# The request names CN and SANs (as the user stories' curl does) while a role with the default
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
    """User story 3: POST the CSR to <mount>/sign/<role>; the private key never leaves the host."""
    data = {"csr": csr_pem, "common_name": common_name, "format": "pem"}
    data.update(_san_fields(alt_names, ip_sans, ttl))
    return _pki_request(client, token, engine_mount_point, role_name, "sign", data)


def issue(client, token, engine_mount_point, role_name, common_name, key_type, key_bits, alt_names=None,
          ip_sans=None, ttl=None):
    """User story 2: Vault makes the key. Type and size are always named (a role with key_type any needs them)."""
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
