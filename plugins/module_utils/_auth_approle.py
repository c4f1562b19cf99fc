# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""auth_method approle: role id + single-use secret id, or a response-wrapped secret id (creation path checked)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from . import vault
from .errors import InvalidInput, WrappingTokenRejected

# The mount only the broker may mint secret ids on (vault_bootstrap.yml); options.AUTH_SPEC's default.
BOOTSTRAP_MOUNT = "minibus-bootstrap"

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
    for option, example in (("auth_mount_point", "approle"), ("bootstrap_mount_point", BOOTSTRAP_MOUNT)):
        mount = params.get(option)
        if mount is None and option == "bootstrap_mount_point":
            continue  # callers without the option (older renewer configs) get the default
        mount = mount or ""
        if not mount or mount.strip("/") != mount or " " in mount:
            raise InvalidInput("%s %r is not a mount path such as %s." % (option, mount, example))
    if params.get("secret_id_wrapping_token") and not params.get("approle_name"):
        raise InvalidInput(
            "secret_id_wrapping_token needs approle_name (for example minibus-generate-sign-server-keys): a "
            "wrapping token is unwrapped only when it was minted for that AppRole role.")


def authenticate(client, params):
    mount = params.get("auth_mount_point") or "approle"
    if params.get("secret_id_wrapping_token"):
        return _bootstrap_login(client, params, mount)
    return vault.approle_login(client, params["role_id"], params.get("secret_id"), mount)


def _bootstrap_login(client, params, renewal_mount):
    """A wrapped secret id handed in is a bootstrap: accepted only from the mount only the broker mints on.

    A host's own token may mint wrapped secret ids for its AppRole on the renewal mount (that is how it
    renews), so a token minted there could come from anyone holding one host's secret id: refused
    before it is unwrapped. The bootstrap login's token carries the host policy, so the host's next
    secret id is still minted on the renewal mount with it (no extra request).
    """
    bootstrap_mount = params.get("bootstrap_mount_point") or BOOTSTRAP_MOUNT
    wrapping_token = params["secret_id_wrapping_token"]
    name = params.get("approle_name")
    creation_path = vault.lookup_creation_path(client, wrapping_token)
    if bootstrap_mount != renewal_mount and creation_path == vault.secret_id_path(renewal_mount, name):
        raise WrappingTokenRejected(
            "The wrapping token was minted at %s, where any host's credentials for this AppRole can mint, not at %s, "
            "where only the broker can: refused without unwrapping it and nothing was written; treat it as "
            "substituted (if your own broker minted it, re-run vault_bootstrap.yml and update minibus.pki on the "
            "controller)." % (creation_path, vault.secret_id_path(bootstrap_mount, name)))
    secret_id = vault.unwrap_secret_id(client, wrapping_token, bootstrap_mount, name,
                                       known_creation_path=creation_path or "")["secret_id"]
    return vault.approle_login(client, params["role_id"], secret_id, bootstrap_mount)
