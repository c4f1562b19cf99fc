# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""The options every minibus.pki plugin shares, and their one table of environment fallbacks.

Plain data in Ansible's argument_spec format so that modules can use it directly, while the lookup
and the on-host renewer read the same names. No Ansible import here.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import errno
import os
import ssl

from .errors import InvalidInput, MinibusError
from .files import read_ca_bundle

# Where resolve_env took an option from (option -> variable), so that a message can name the variable.
FROM_ENV = "_from_env"

CONNECTION_SPEC = dict(
    url=dict(type="list", elements="str"),
    ca_cert=dict(type="path", aliases=["cacert"]),
    validate_certs=dict(type="bool", default=True),
    namespace=dict(type="str"),
    timeout=dict(type="int", default=30),
    retries=dict(type="int", default=3),
    total_timeout=dict(type="int"),
    allow_insecure_http=dict(type="bool", default=False),
)

AUTH_SPEC = dict(
    auth_method=dict(type="str", choices=["approle", "token"]),
    token=dict(type="str", no_log=True),
    role_id=dict(type="str"),
    secret_id=dict(type="str", no_log=True),
    secret_id_wrapping_token=dict(type="str", no_log=True),
    approle_name=dict(type="str"),
    auth_mount_point=dict(type="str", default="approle"),
    # Where a host's first (bootstrap) secret id comes from: a mount only the broker mints on, so a
    # wrapping token minted with a host's credentials (on auth_mount_point) is refused at bootstrap.
    bootstrap_mount_point=dict(type="str", default="minibus-bootstrap"),
)

# The one table of environment fallbacks: the first variable that is set wins. VAULT_* first so an
# existing Vault setup keeps working; BAO_* for OpenBao users.
ENV_FALLBACKS = (
    ("url", ("VAULT_ADDR", "BAO_ADDR")),
    ("ca_cert", ("VAULT_CACERT", "BAO_CACERT")),
    ("namespace", ("VAULT_NAMESPACE", "BAO_NAMESPACE")),
    ("total_timeout", ("MINIBUS_VAULT_TOTAL_TIMEOUT",)),
    ("token", ("VAULT_TOKEN", "BAO_TOKEN")),
    ("secret_id", ("MINIBUS_CSR_SECRET_ID",)),
)

_CREDENTIALS = ("token", "secret_id", "secret_id_wrapping_token")


def resolve_env(params, environ):
    """Fill unset options from the environment, in place, and return params.

    Credentials are special: an explicitly given credential is never mixed with one from the
    environment (VAULT_TOKEN in the shell must not turn an AppRole login into a token login).
    MINIBUS_CSR_SECRET_ID only applies with a role_id; VAULT_TOKEN only when no AppRole
    credential is given.
    """
    explicit_credential = any(params.get(name) for name in _CREDENTIALS)
    method = params.get("auth_method")
    for option, variables in ENV_FALLBACKS:
        if params.get(option) not in (None, ""):
            continue
        if option in _CREDENTIALS and explicit_credential:
            continue
        if (option == "token" and method == "approle") or (option == "secret_id" and method == "token"):
            continue
        if option == "secret_id" and not params.get("role_id"):
            continue
        if option == "token" and method != "token" and params.get("role_id") \
                and _first(environ, ("MINIBUS_CSR_SECRET_ID",)):
            continue
        variable, value = _first_set(environ, variables)
        if value:
            params[option] = value
            params.setdefault(FROM_ENV, {})[option] = variable
    return params


def _first_set(environ, variables):
    for variable in variables:
        value = environ.get(variable)
        if value:
            return variable, value
    return None, None


def _first(environ, variables):
    return _first_set(environ, variables)[1]


def _whole_number(params, name):
    """Coerce "30" to 30 in place (renewer config, survey answers); one sentence for anything else."""
    value = params.get(name)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return
    text = str(value).strip()
    if isinstance(value, bool) or not text.lstrip("-").isdigit():
        raise InvalidInput("%s %r is not a whole number: give it like 30." % (name, value))
    params[name] = int(text)


def validate_connection(params, read_ca_cert=True):
    """Check connection options before any network call (coerces timeout/retries given as strings).

    read_ca_cert=False leaves the CA bundle to the caller: root about to drop to the store's owner does
    not open a file that account may control; the dropped child checks it (issuance._ensure).
    """
    addresses = addresses_of(params.get("url"))
    if not addresses:
        raise InvalidInput("No Vault address: set url, or VAULT_ADDR (or BAO_ADDR) in the environment.")
    for url in addresses:
        if not isinstance(url, str) or not (url.startswith("https://") or url.startswith("http://")) \
                or len(url.split("://", 1)[1].strip("/")) == 0:
            raise InvalidInput(
                "The Vault address %r is not an http(s) URL: give it as https://host:8200." % (url,)
            )
        if url.startswith("http://") and not params.get("allow_insecure_http"):
            raise InvalidInput(
                "The Vault address %s is plain http: secret ids, tokens and the CA would cross the network in clear; "
                "use https://, or set allow_insecure_http to true for a lab." % url
            )
    # One list from here on: the client tries the addresses in this order (env: commas separate them).
    params["url"] = addresses
    _whole_number(params, "timeout")
    _whole_number(params, "retries")
    _whole_number(params, "total_timeout")
    if read_ca_cert and params.get("ca_cert") and params.get("validate_certs") is not False:
        problem = check_ca_bundle(params["ca_cert"], _option_label(params, "ca_cert"))
        if problem:
            raise InvalidInput(problem)
    if params.get("timeout") is not None and params["timeout"] <= 0:
        raise InvalidInput("timeout must be a positive number of seconds.")
    if params.get("total_timeout") is not None and params["total_timeout"] <= 0:
        raise InvalidInput("total_timeout must be a positive number of seconds (or unset: timeout x (retries + 1) x "
                           "the number of addresses).")
    if params.get("retries") is not None and params["retries"] < 0:
        raise InvalidInput("retries must be 0 or more.")


def addresses_of(url):
    """The Vault addresses in url, in order: a string (commas separate several, as in VAULT_ADDR) or a list.

    Blank entries and repeats are dropped, and a trailing slash is removed.
    """
    if url is None:
        return []
    items = [url] if isinstance(url, str) else list(url)
    addresses = []
    for item in items:
        parts = item.split(",") if isinstance(item, str) else [item]
        for part in parts:
            if isinstance(part, str):
                part = part.strip()
                if not part:
                    continue
                if "://" in part and part.split("://", 1)[1].strip("/"):
                    part = part.rstrip("/")
            if part not in addresses:
                addresses.append(part)
    return addresses


def _option_label(params, name):
    variable = (params.get(FROM_ENV) or {}).get(name)
    return "%s (from %s)" % (name, variable) if variable else name


def check_ca_bundle(path, label="ca_cert"):
    """One sentence when path is not a readable PEM bundle with at least one certificate, else None."""
    fix = "point %s at the PEM CA bundle that signed Vault's certificate; nothing was sent to Vault" % label.split()[0]
    if not os.path.lexists(path):
        return "%s %s does not exist: %s." % (label, path, fix)
    if os.path.isdir(path):
        return "%s %s is a directory, not a CA bundle file: %s." % (label, path, fix)
    if not os.access(path, os.R_OK):
        return "%s %s cannot be read by uid %d (%s): make it readable (a CA certificate is public) or %s." % (
            label, path, os.geteuid(), os.strerror(errno.EACCES), fix)
    try:  # bounded: a FIFO or a link to /dev/zero at path is a sentence, never a hang
        data = read_ca_bundle(path, label.split()[0]) or b""
    except MinibusError as exc:
        return exc.message
    if not data.strip():
        return "%s %s is empty: %s." % (label, path, fix)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        return "%s %s holds no PEM certificate (no -----BEGIN CERTIFICATE----- block): %s." % (label, path, fix)
    try:
        ssl.create_default_context().load_verify_locations(cadata=data.decode("ascii"))
    except (ssl.SSLError, ValueError, UnicodeDecodeError):
        return "%s %s holds no PEM certificate that parses: %s." % (label, path, fix)
    return None


def connection_warnings(params):
    """What the shared connection options give up, as warnings for the module result or the journal."""
    warnings = []
    if params.get("validate_certs") is False:
        warnings.append("validate_certs is false: Vault's TLS certificate is not checked, so anyone on the path can "
                        "read the secret id and token; set ca_cert (or VAULT_CACERT) instead.")
    if any(str(url).startswith("http://") for url in addresses_of(params.get("url"))):
        warnings.append("allow_insecure_http is set: secret ids and tokens cross the network in clear; use https:// "
                        "outside a lab.")
    return warnings
