#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_audit
short_description: Read-only audit of the fleet's secret ids and certificates in Vault or OpenBao
version_added: 0.2.0
description:
  - Lists the live AppRole secret ids (by accessor, on the renewal and the bootstrap mount) and the unexpired
    certificates of the PKI mount, and compares them with the inventory hosts and their local facts
    (C(ansible_local.minibus_certs)). Fails, with the findings returned, when a host holds more than one live
    secret id, a secret id belongs to no inventory host, a valid certificate names something outside the
    inventory, or a host's last successful renewal is older than O(max_renewal_age) (or it reports no fact).
  - Sends only lists and reads, and secret-id accessor lookups (POSTs that change nothing). Give it a token
    with the C(minibus-auditor) policy of C(vault_bootstrap.yml), which can do nothing else.
  - Playbook C(minibus.pki.audit) gathers the facts and runs it on the controller.
author:
  - minibus.pki maintainers (@minibus-pki)
extends_documentation_fragment:
  - minibus.pki.connection
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: The audit changes nothing, so check mode runs it the same way.
  diff_mode:
    support: none
  platform:
    platforms: posix
requirements:
  - hvac (Debian 12's python3-hvac 0.11.2 or newer)
options:
  token:
    description:
      - A Vault token with the C(minibus-auditor) policy. Falls back to E(VAULT_TOKEN), then E(BAO_TOKEN).
    type: str
  hosts:
    description:
      - The inventory hosts, each C({name, fact}) with its inventory name and its
        C(ansible_local.minibus_certs) fact (missing or null when it could not be gathered).
      - A host owns the secret ids whose metadata C(host) is its inventory name or a name of its certificate
        (the fact's request), and the certificates for those names.
    type: list
    elements: dict
    required: true
  approle_names:
    description: The AppRole roles whose secret ids are counted.
    type: list
    elements: str
    default: [minibus-generate-sign-server-keys, minibus-log-server]
  secret_id_mount_points:
    description: The AppRole mounts looked at (renewal and bootstrap).
    type: list
    elements: str
    default: [approle, minibus-bootstrap]
  engine_mount_point:
    description: The PKI mount whose stored certificates are read.
    type: str
    default: pki_int
  certificate_limit:
    description: At most this many certificates are read (the last ones Vault lists); the rest are counted in
      RV(certificates_not_read).
    type: int
    default: 500
  max_renewal_age:
    description: A host whose last successful renewal (from its local fact) is older than this is reported.
      The default is the PKI role's max_ttl, one certificate lifetime.
    type: str
    default: 25h
"""

EXAMPLES = r"""
- name: Audit the fleet (auditor token in VAULT_TOKEN; playbook minibus.pki.audit does this)
  minibus.pki.vault_audit:
    url: https://vault.example.org:8200
    hosts:
      - name: web1.example.org
        fact: "{{ hostvars['web1.example.org'].ansible_local.minibus_certs | default(none) }}"
  delegate_to: localhost
"""

RETURN = r"""
findings:
  description: What is wrong, each with C(kind) (multiple_secret_ids, unowned_secret_id, foreign_certificate,
    stale_renewal, no_local_fact, local_fact_error), a one-sentence C(message) and its details.
  returned: always
  type: list
  elements: dict
live_secret_ids:
  description: Live secret ids counted on all mounts.
  returned: success
  type: int
live_certificates:
  description: Unexpired leaf certificates read.
  returned: success
  type: int
certificates_not_read:
  description: Certificates beyond O(certificate_limit), not read.
  returned: success
  type: int
vault_requests:
  description: Requests sent to Vault.
  returned: success
  type: int
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.minibus.pki.plugins.module_utils.audit import AUDIT_SPEC, prepare, run_audit
from ansible_collections.minibus.pki.plugins.module_utils.errors import InvalidInput, MinibusError
from ansible_collections.minibus.pki.plugins.module_utils.options import (
    CONNECTION_SPEC, connection_warnings, resolve_env, validate_connection)
from ansible_collections.minibus.pki.plugins.module_utils.vault import HVAC_IMPORT_ERROR, client_from_options


def main():
    argument_spec = dict(CONNECTION_SPEC)
    argument_spec.update(AUDIT_SPEC)
    argument_spec["token"] = dict(type="str", no_log=True)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    if HVAC_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("hvac"))
    params = resolve_env(dict(module.params, auth_method="token"), os.environ)
    client = None
    try:
        validate_connection(params)
        if not params.get("token"):
            raise InvalidInput("No Vault token: set token (or VAULT_TOKEN) to a token with the minibus-auditor policy.")
        p = prepare(params)
        for warning in connection_warnings(params):
            module.warn(warning)
        client = client_from_options(params)
        result = run_audit(client, params["token"], p)
    except MinibusError as exc:
        module.fail_json(msg=client.scrub(exc.message) if client else exc.message, findings=[])
    finally:
        if client is not None:
            client.close()
    if result["findings"]:
        module.fail_json(msg="The audit found %d problem(s): %s" % (
            len(result["findings"]), " ".join(f["message"] for f in result["findings"])), **result)
    module.exit_json(msg="The audit found nothing: every live secret id and certificate belongs to one inventory "
                         "host and every host renewed in time.", **result)


if __name__ == "__main__":
    main()
