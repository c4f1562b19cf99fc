# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""auth_method approle: role id + single-use secret id, or a response-wrapped secret id (creation path checked)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from . import vault
from .errors import InvalidInput

NAME = "approle"
CREDENTIALS = ("secret_id", "secret_id_wrapping_token")
# The renewer logs in with a secret id from its store, so the credential may come after validation.
STORED_CREDENTIAL = True
MISSING = ("auth_method approle needs role_id with secret_id (or MINIBUS_CSR_SECRET_ID) or "
           "secret_id_wrapping_token.")


def given(params):
    return bool(params.get("secret_id") or params.get("secret_id_wrapping_token"))


def validate(params):
    """Before any network call: raise InvalidInput (one sentence) if the options cannot work."""
    if params.get("secret_id") and params.get("secret_id_wrapping_token"):
        raise InvalidInput("Both secret_id and secret_id_wrapping_token were given: pass only one of them.")
    if not given(params):
        raise InvalidInput(MISSING)
    if not params.get("role_id"):
        raise InvalidInput("AppRole login needs role_id (for example minibus/csr) next to the secret id.")
    mount = params.get("auth_mount_point") or ""
    if not mount or mount.strip("/") != mount or " " in mount:
        raise InvalidInput("auth_mount_point %r is not a mount path such as approle." % mount)
    if params.get("secret_id_wrapping_token") and not params.get("approle_name"):
        raise InvalidInput(
            "secret_id_wrapping_token needs approle_name (for example minibus-generate-sign-server-keys): a "
            "wrapping token is unwrapped only when it was minted for that AppRole role.")


def authenticate(client, params):
    mount = params.get("auth_mount_point") or "approle"
    secret_id = params.get("secret_id")
    if params.get("secret_id_wrapping_token"):
        secret_id = vault.unwrap_secret_id(client, params["secret_id_wrapping_token"], mount,
                                           params.get("approle_name"))["secret_id"]
    return vault.approle_login(client, params["role_id"], secret_id, mount)
