#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_approle_login
short_description: Log in to Vault or OpenBao with AppRole and return the token
version_added: 0.1.0
description:
  - Trades the role id and a single-use secret id (or a response-wrapped secret
    id, whose creation path is checked before it is unwrapped) for a Vault token.
  - The token is returned, so set C(no_log) on the task, and prefer
    M(minibus.pki.vault_pki_issue) with inline authentication, where the token never sits in a variable and is
    revoked before the module returns.
  - A secret id can be used once. A login that broke after the request was sent is not retried, since the
    secret id may be spent.
author:
  - minibus.pki maintainers (@minibus-pki)
extends_documentation_fragment:
  - minibus.pki.connection
  - minibus.pki.auth
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.actiongroups
attributes:
  action_group:
    description:
      - Use C(group/minibus.pki.vault) in C(module_defaults) to set the shared connection and authentication options
        once for M(minibus.pki.vault_approle_login), M(minibus.pki.vault_unwrap) and M(minibus.pki.vault_pki_issue).
    support: full
    membership:
      - minibus.pki.vault
  check_mode:
    support: full
    details: In check mode no request is sent (a login would spend the secret id) and no token is returned.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - hvac (Debian 12's python3-hvac 0.11.2 or newer)
notes:
  - This module does not accept O(token); it exists to obtain one.
seealso:
  - module: minibus.pki.vault_pki_issue
    description: Logs in, gets a certificate and revokes the token in one task, so the token never sits in a variable.
  - module: community.hashi_vault.vault_login
    description: The general-purpose login module of community.hashi_vault (many auth methods, no creation-path check of wrapped secret ids).
  - plugin: community.hashi_vault.vault_login
    plugin_type: lookup
    description: The same login as a lookup on the controller.
"""

EXAMPLES = r"""
- name: Log in with the role id and a secret id from MINIBUS_CSR_SECRET_ID
  minibus.pki.vault_approle_login:
    url: https://vault.example.com:8200
    role_id: minibus/csr
  register: login
  no_log: true

- name: Log in with a wrapped secret id, checking it was minted for our AppRole role
  minibus.pki.vault_approle_login:
    role_id: minibus/csr
    approle_name: minibus-generate-sign-server-keys
    secret_id_wrapping_token: "{{ wrapped }}"
  register: login
  no_log: true
"""

RETURN = r"""
token:
  description: The client token. Secret; keep the task C(no_log).
  returned: success, not in check mode
  type: str
accessor:
  description: The token's accessor (not secret; use it to look up or revoke the token).
  returned: success, not in check mode
  type: str
policies:
  description: Policies attached to the token.
  returned: success, not in check mode
  type: list
  elements: str
lease_duration:
  description: Seconds the token lives.
  returned: success, not in check mode
  type: int
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError
from ansible_collections.minibus.pki.plugins.module_utils.options import (
    AUTH_SPEC, CONNECTION_SPEC, connection_warnings, resolve_env, validate_connection)
from ansible_collections.minibus.pki.plugins.module_utils._authenticator import authenticate, validate as validate_auth
from ansible_collections.minibus.pki.plugins.module_utils.vault import HVAC_IMPORT_ERROR, client_from_options


def main():
    argument_spec = dict(CONNECTION_SPEC)
    argument_spec.update(AUTH_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if HVAC_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("hvac"))
    if module.params["token"] or module.params["auth_method"] not in (None, "approle"):
        module.fail_json(msg="vault_approle_login obtains a token and does not take one: give role_id with "
                             "secret_id or secret_id_wrapping_token.")
    params = resolve_env(dict(module.params), os.environ)
    params["token"] = None  # VAULT_TOKEN in the environment must not stand in for an AppRole login
    try:
        validate_connection(params)
        validate_auth(params)
        if module.check_mode:
            module.exit_json(changed=True, msg="would log in with AppRole role id %s" % params["role_id"])
        for warning in connection_warnings(params):
            module.warn(warning)
        client = client_from_options(params)
        session = authenticate(client, params)
    except MinibusError as exc:
        module.fail_json(msg=exc.message)
    module.exit_json(changed=True, token=session.token, accessor=session.accessor, policies=session.policies,
                     lease_duration=session.lease_duration)


if __name__ == "__main__":
    main()
