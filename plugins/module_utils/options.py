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

from .errors import InvalidInput

CONNECTION_SPEC = dict(
    url=dict(type="str"),
    ca_cert=dict(type="path", aliases=["cacert"]),
    validate_certs=dict(type="bool", default=True),
    namespace=dict(type="str"),
    timeout=dict(type="int", default=30),
    retries=dict(type="int", default=3),
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
        value = _first(environ, variables)
        if value:
            params[option] = value
    return params


def _first(environ, variables):
    for variable in variables:
        value = environ.get(variable)
        if value:
            return value
    return None


def _whole_number(params, name):
    """Coerce "30" to 30 in place (renewer config, survey answers); one sentence for anything else."""
    value = params.get(name)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return
    text = str(value).strip()
    if isinstance(value, bool) or not text.lstrip("-").isdigit():
        raise InvalidInput("%s %r is not a whole number: give it like 30." % (name, value))
    params[name] = int(text)


def validate_connection(params):
    """Check connection options before any network call (coerces timeout/retries given as strings)."""
    url = params.get("url")
    if not url:
        raise InvalidInput("No Vault address: set url, or VAULT_ADDR (or BAO_ADDR) in the environment.")
    if not isinstance(url, str) or not (url.startswith("https://") or url.startswith("http://")) \
            or len(url.split("://", 1)[1].strip("/")) == 0:
        raise InvalidInput(
            "The Vault address %r is not an http(s) URL: give it as https://host:8200." % url
        )
    if url.startswith("http://") and not params.get("allow_insecure_http"):
        raise InvalidInput(
            "The Vault address %s is plain http: secret ids, tokens and the CA would cross the network in clear; "
            "use https://, or set allow_insecure_http to true for a lab." % url
        )
    _whole_number(params, "timeout")
    _whole_number(params, "retries")
    if params.get("timeout") is not None and params["timeout"] <= 0:
        raise InvalidInput("timeout must be a positive number of seconds.")
    if params.get("retries") is not None and params["retries"] < 0:
        raise InvalidInput("retries must be 0 or more.")


def connection_warnings(params):
    """What the shared connection options give up, as warnings for the module result or the journal."""
    warnings = []
    if params.get("validate_certs") is False:
        warnings.append("validate_certs is false: Vault's TLS certificate is not checked, so anyone on the path can "
                        "read the secret id and token; set ca_cert (or VAULT_CACERT) instead.")
    if str(params.get("url") or "").startswith("http://"):
        warnings.append("allow_insecure_http is set: secret ids and tokens cross the network in clear; use https:// "
                        "outside a lab.")
    return warnings


def validate_auth(params, required=True):
    """Check that the credentials form exactly one usable method, before any network call.

    Returns the auth method's name ("token", "approle") or None (no credentials, allowed when required is
    False). The rules of each method live in its own _auth_<name>.py.
    """
    # Imported here: _authenticator imports vault, which imports this module.
    from . import _authenticator  # pylint: disable=import-outside-toplevel
    return _authenticator.validate(params, required)
