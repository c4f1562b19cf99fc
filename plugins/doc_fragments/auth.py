# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    DOCUMENTATION = r"""
options:
  auth_method:
    description:
      - How to log in to Vault. C(token) uses O(token) as it is; C(approle) logs in with O(role_id) and a
        secret id (O(secret_id), O(secret_id_wrapping_token), or the renewer's stored one).
      - When not set, the method is the one whose credential is given (a token, or an AppRole secret id).
        Credentials of another method next to the chosen one are refused.
    type: str
    choices: [approle, token]
  token:
    description:
      - A Vault token to use as it is. Falls back to E(VAULT_TOKEN), then E(BAO_TOKEN), but only when no
        AppRole credential is given.
      - A token given here is never revoked by the plugin.
    type: str
  role_id:
    description:
      - The AppRole role id. It is effectively public; custom role ids such as C(minibus/csr) work.
    type: str
  secret_id:
    description:
      - The AppRole secret id, single-use and short-lived. Falls back to E(MINIBUS_CSR_SECRET_ID) when
        O(role_id) is set.
      - Prefer O(secret_id_wrapping_token), since a bare secret id has travelled unprotected.
    type: str
  secret_id_wrapping_token:
    description:
      - A response-wrapping token that holds the secret id.
      - It is looked up first and refused unless its creation path is exactly
        C(auth/<bootstrap_mount_point>/role/<approle_name>/secret-id), the mount only the broker mints on;
        only then is it unwrapped, and the login uses that mount. Needs O(approle_name); a token minted for any
        other AppRole role, or on O(auth_mount_point) (where host credentials can mint), is refused.
    type: str
  approle_name:
    description:
      - The name of the AppRole role (not its role id), for example C(minibus-generate-sign-server-keys).
      - Used to check the creation path of wrapping tokens (required with O(secret_id_wrapping_token)),
        and to mint secret ids.
    type: str
  auth_mount_point:
    description:
      - Where the AppRole auth method is mounted for logins with a plain O(secret_id) or a stored one (the
        renewal mount), and where a host mints its own next secret id.
    type: str
    default: approle
  bootstrap_mount_point:
    description:
      - The AppRole mount of bootstrap secret ids (vault_bootstrap.yml makes it, with roles of the same names and
        role ids as on O(auth_mount_point)); only the broker may mint there, host tokens may not.
      - A O(secret_id_wrapping_token) must have been minted there, and the lookup P(minibus.pki.vault_secret_id#lookup)
        mints there. A Vault bootstrapped by an older minibus.pki lacks this mount; re-run vault_bootstrap.yml.
    type: str
    default: minibus-bootstrap
notes:
  - Give either O(token) or AppRole credentials (O(role_id) with O(secret_id) or O(secret_id_wrapping_token)).
  - A token obtained through AppRole is revoked (C(auth/token/revoke-self)) before the plugin returns,
    except by M(minibus.pki.vault_approle_login), whose purpose is to return it.
"""

    # Only for plugins that run on the controller (the lookup); see connection.py's PLUGINS. No ini
    # key for the token: a secret does not belong in ansible.cfg.
    PLUGINS = r"""
options:
  auth_method:
    env:
      - name: MINIBUS_PKI_VAULT_AUTH_METHOD
    ini:
      - section: minibus_pki_vault
        key: auth_method
    vars:
      - name: minibus_pki_vault_auth_method
  token:
    env:
      - name: MINIBUS_PKI_VAULT_TOKEN
    vars:
      - name: minibus_pki_vault_token
  role_id:
    env:
      - name: MINIBUS_PKI_VAULT_ROLE_ID
    ini:
      - section: minibus_pki_vault
        key: role_id
    vars:
      - name: minibus_pki_vault_role_id
  auth_mount_point:
    env:
      - name: MINIBUS_PKI_VAULT_AUTH_MOUNT_POINT
    ini:
      - section: minibus_pki_vault
        key: auth_mount_point
    vars:
      - name: minibus_pki_vault_auth_mount_point
  bootstrap_mount_point:
    env:
      - name: MINIBUS_PKI_VAULT_BOOTSTRAP_MOUNT_POINT
    ini:
      - section: minibus_pki_vault
        key: bootstrap_mount_point
    vars:
      - name: minibus_pki_vault_bootstrap_mount_point
"""
