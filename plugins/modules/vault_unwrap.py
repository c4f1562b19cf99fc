#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_unwrap
short_description: Unwrap a Vault response-wrapping token after checking where it was created
version_added: 0.1.0
description:
  - Looks the wrapping token up (C(sys/wrapping/lookup)) and refuses it unless its creation path is exactly
    O(expected_creation_path); only then unwraps it (C(sys/wrapping/unwrap)).
  - A mismatch may mean the token was intercepted, unwrapped and re-wrapped by someone else; the task fails
    and says so.
author:
  - minibus.pki maintainers (@minibus-pki)
extends_documentation_fragment:
  - minibus.pki.connection
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
    details: In check mode the token is looked up and its creation path checked, but it is not unwrapped.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - hvac (Debian 12's python3-hvac 0.11.2 or newer)
options:
  wrapping_token:
    description: The response-wrapping token. Single use.
    type: str
    required: true
  expected_creation_path:
    description:
      - The exact path the wrapped response must have been created at, for example
        C(auth/approle/role/minibus-generate-sign-server-keys/secret-id).
    type: str
    required: true
seealso:
  - plugin: minibus.pki.vault_secret_id
    plugin_type: lookup
    description: Mints the wrapped secret ids this module unwraps.
  - module: minibus.pki.vault_approle_login
    description: Logs in with a wrapped secret id, doing this check and the unwrap itself.
  - module: minibus.pki.vault_pki_issue
    description: Unwraps, logs in and gets a certificate in one task, so the secret id never sits in a variable.
  - plugin: community.hashi_vault.vault_read
    plugin_type: lookup
    description: Reads a Vault path with community.hashi_vault's options (no creation-path check).
"""

EXAMPLES = r"""
- name: Unwrap a secret id minted for our AppRole role
  minibus.pki.vault_unwrap:
    url: https://vault.example.com:8200
    wrapping_token: "{{ wrapped }}"
    expected_creation_path: auth/approle/role/minibus-generate-sign-server-keys/secret-id
  register: unwrapped
  no_log: true
"""

RETURN = r"""
data:
  description: The unwrapped response data (for a secret id, C(secret_id) and C(secret_id_accessor)). Secret.
  returned: success, not in check mode
  type: dict
creation_path:
  description: The path the wrapped response was created at.
  returned: success
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError
from ansible_collections.minibus.pki.plugins.module_utils.options import (
    CONNECTION_SPEC, connection_warnings, resolve_env, validate_connection)
from ansible_collections.minibus.pki.plugins.module_utils.vault import (
    HVAC_IMPORT_ERROR, check_creation_path, client_from_options, lookup_creation_path, unwrap)


def main():
    argument_spec = dict(CONNECTION_SPEC)
    argument_spec.update(
        wrapping_token=dict(type="str", required=True, no_log=True),
        expected_creation_path=dict(type="str", required=True),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if HVAC_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("hvac"))
    params = resolve_env(dict(module.params), os.environ)
    expected = params["expected_creation_path"]
    try:
        validate_connection(params)
        for warning in connection_warnings(params):
            module.warn(warning)
        client = client_from_options(params)
        if module.check_mode:
            creation_path = lookup_creation_path(client, params["wrapping_token"])
            check_creation_path(creation_path, expected)
            module.exit_json(changed=True, creation_path=creation_path)
        data, creation_path = unwrap(client, params["wrapping_token"], expected)
    except MinibusError as exc:
        module.fail_json(msg=exc.message)
    module.exit_json(changed=True, data=data, creation_path=creation_path)


if __name__ == "__main__":
    main()
