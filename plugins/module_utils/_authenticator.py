# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""The auth methods, one file each (_auth_<name>.py: NAME, CREDENTIALS, given, validate, authenticate).

Adding a method (cert, say) is one new file, its line below, its choice in options.AUTH_SPEC and a line
in the auth doc fragment. Ansible bundles module_utils by their static imports, so the list is explicit.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from . import _auth_approle, _auth_token
from .errors import InvalidInput

# Order matters only for deriving the method when auth_method is not given (the first whose credential is set).
METHODS = dict((m.NAME, m) for m in (_auth_token, _auth_approle))


def method_of(params):
    """The explicit auth_method, else the one whose credential is set (compatibility), else None."""
    explicit = params.get("auth_method")
    if explicit:
        if explicit not in METHODS:
            raise InvalidInput("auth_method %r is not supported: use %s." % (explicit, " or ".join(sorted(METHODS))))
        return explicit
    given = [name for name, method in METHODS.items() if method.given(params)]
    if len(given) > 1:
        if set(given) == {"token", "approle"}:
            raise InvalidInput(
                "Both a token and AppRole credentials were given: use either token or role_id with "
                "secret_id/secret_id_wrapping_token, not both.")
        raise InvalidInput("Credentials for %s were given: set auth_method to the one to use." % " and ".join(given))
    return given[0] if given else None


def validate(params, required=True):
    """Check the credentials before any network call. Returns the method name, or None (allowed when not required)."""
    name = method_of(params)
    if name is not None and not METHODS[name].given(params) and not required \
            and getattr(METHODS[name], "STORED_CREDENTIAL", False):
        return None  # an explicit method whose credential comes later (the renewer's secret id store)
    if name is None:
        if required:
            raise InvalidInput(
                "No Vault credentials: set token (or VAULT_TOKEN), or role_id with secret_id "
                "(or MINIBUS_CSR_SECRET_ID) or secret_id_wrapping_token.")
        return None
    others = [n for n, m in METHODS.items() if n != name and m.given(params)]
    if others:
        raise InvalidInput("auth_method is %s, but credentials for %s were given too: pass only the ones for %s."
                           % (name, " and ".join(others), name))
    METHODS[name].validate(params)
    return name


def authenticate(client, params):
    """A vault.Session for the validated options."""
    return METHODS[validate(params)].authenticate(client, params)
