# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: vault_secret_id
short_description: Mint response-wrapped AppRole secret ids on the controller (the trusted broker)
version_added: 0.1.0
description:
  - For each AppRole role name in the terms, asks Vault for a new secret id, response-wrapped, and returns the
    wrapping token. The secret id itself never appears on the controller; the host unwraps it after checking
    the token's creation path (M(minibus.pki.vault_pki_issue) does that).
  - The secret id is minted on the bootstrap mount O(bootstrap_mount_point) (C(auth/minibus-bootstrap/role/<name>/secret-id)),
    where only the broker may mint; hosts accept nothing else at bootstrap. O(auth_mount_point) is only where the
    lookup itself logs in with AppRole credentials, if it is given some.
  - Runs on the controller (AWX acts as the broker), so the connection options and environment fallbacks apply
    there, for example E(VAULT_ADDR) and E(VAULT_TOKEN) injected by an AWX credential.
  - C(module_defaults) does not reach a lookup. Configure it with its keywords, with variables
    (V(minibus_pki_vault_url), ...), with E(MINIBUS_PKI_VAULT_URL) and the like, or in C(ansible.cfg)
    (section C([minibus_pki_vault])), in that order of precedence; the E(VAULT_*) and E(BAO_*) fallbacks
    come last.
  - The wrapping token is single-use and lives O(wrap_ttl); it is a secret, so tasks using it should be
    C(no_log).
  - A given O(token) that is periodic (created with C(-period), as the broker token is) is renewed
    (C(auth/token/renew-self), after C(auth/token/lookup-self)) when less than half its period is left,
    so it lives as long as the lookup runs at least once every half period.
author:
  - minibus.pki maintainers (@minibus-pki)
extends_documentation_fragment:
  - minibus.pki.connection
  - minibus.pki.connection.plugins
  - minibus.pki.auth
  - minibus.pki.auth.plugins
options:
  _terms:
    description: Names of AppRole roles (not role ids) to mint a wrapped secret id for.
    required: true
    type: list
    elements: str
  wrap_ttl:
    description: How long the wrapping token lives.
    type: str
    default: 120s
  metadata:
    description:
      - "Metadata stored with the secret id (shown in Vault's audit log and secret id accessor lookups). Name the
        host it is for, for example C({'host': inventory_hostname}), so that live secret ids can be counted per host."
      - Values must be strings.
    type: dict
  renew_only:
    description:
      - Mint nothing and return an empty list; only renew the given periodic O(token) if less than
        half its period is left. No term is needed then.
      - C(minibus.pki.site) does this once per run on the controller, so the broker token stays alive
        while no host needs a bootstrap (awx/README.md).
    type: bool
    default: false
  cidr_list:
    description:
      - CIDR blocks the secret id may be used from (AppRole C(cidr_list)), as Vault sees the client's address;
        behind NAT that is the NAT's address. Must lie within the AppRole role's C(secret_id_bound_cidrs), if set.
      - A login from any other address is refused.
    type: list
    elements: str
seealso:
  - module: minibus.pki.vault_pki_issue
    description: Takes the wrapping token on the host, checks its creation path, unwraps it and gets a certificate.
  - module: minibus.pki.vault_unwrap
    description: Unwraps a wrapping token after an exact creation-path check.
  - plugin: community.hashi_vault.vault_write
    plugin_type: lookup
    description: A generic write to any Vault path from the controller; this lookup adds response wrapping of the secret id, its metadata and O(cidr_list).
  - module: community.hashi_vault.vault_write
    description: The same write as a module.
"""

EXAMPLES = r"""
- name: Give the host a wrapped secret id (broker token in VAULT_TOKEN on the controller)
  minibus.pki.vault_pki_issue:
    role_id: minibus/csr
    approle_name: minibus-generate-sign-server-keys
    secret_id_wrapping_token: "{{ lookup('minibus.pki.vault_secret_id', 'minibus-generate-sign-server-keys',
                                  metadata={'host': inventory_hostname}, cidr_list=['192.0.2.0/24']) }}"
    common_name: "{{ ansible_facts['fqdn'] }}"
    cert_path: /var/lib/minibus-certs/tls/cert.pem
    key_path: /var/lib/minibus-certs/tls/key.pem
  no_log: true

- name: The same with the controller's Vault named by variables (module_defaults does not reach a lookup)
  vars:
    minibus_pki_vault_url: https://vault.example.org:8200
    minibus_pki_vault_ca_cert: /etc/ssl/certs/vault-ca.pem
  ansible.builtin.set_fact:
    wrapped: "{{ lookup('minibus.pki.vault_secret_id', 'minibus-generate-sign-server-keys') }}"
  no_log: true

- name: Keep a periodic broker token alive without minting (what minibus.pki.site does each run)
  ansible.builtin.set_fact:
    renewed: "{{ query('minibus.pki.vault_secret_id', renew_only=true) }}"
"""

RETURN = r"""
_raw:
  description: One wrapping token per term.
  type: list
  elements: str
"""

import os

from ansible.errors import AnsibleError, AnsibleLookupError
from ansible.plugins.lookup import LookupBase
from ansible.utils.display import Display

try:
    from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError
    from ansible_collections.minibus.pki.plugins.module_utils.options import (
        AUTH_SPEC, CONNECTION_SPEC, connection_warnings, resolve_env, validate_connection)
    from ansible_collections.minibus.pki.plugins.module_utils.vault import (
        HVAC_IMPORT_ERROR, client_from_options, mint_bootstrap_secret_id, renew_self_if_due, revoke_self)
    from ansible_collections.minibus.pki.plugins.module_utils._authenticator import (
        authenticate, validate as validate_auth)
except ImportError as exc:  # pragma: no cover - the collection is broken, not the user's input
    raise AnsibleError("minibus.pki is incompletely installed: %s" % exc)

display = Display()

# The prefix of the variables documented in the connection/auth doc fragments' PLUGINS sections.
_VARS_PREFIX = "minibus_pki_vault_"


class LookupModule(LookupBase):

    def _own_variables(self, variables):
        """The minibus_pki_vault_* variables, templated: a lookup receives them raw, unlike a keyword."""
        own = dict((name, value) for name, value in (variables or {}).items() if name.startswith(_VARS_PREFIX))
        return dict((name, self._templar.template(value)) for name, value in own.items())

    def run(self, terms, variables=None, **kwargs):
        if HVAC_IMPORT_ERROR:
            raise AnsibleLookupError("The minibus.pki.vault_secret_id lookup needs the Python library hvac on the "
                                     "controller: pip install hvac.")
        self.set_options(var_options=self._own_variables(variables), direct=kwargs)
        params = dict((name, self.get_option(name)) for name in list(CONNECTION_SPEC) + list(AUTH_SPEC))
        resolve_env(params, os.environ)
        names = [t for t in terms if t]
        renew_only = self.get_option("renew_only")
        if not names and not renew_only:
            raise AnsibleLookupError("vault_secret_id needs at least one AppRole role name as a term.")
        session = client = None
        try:
            validate_connection(params)
            method = validate_auth(params)
            if renew_only and method != "token":
                # Checked before any request: an AppRole login would spend a secret id for nothing.
                raise AnsibleLookupError("vault_secret_id renew_only=true keeps a given token alive; with AppRole "
                                         "credentials there is no such token: drop renew_only.")
            for warning in connection_warnings(params):
                display.warning("minibus.pki.vault_secret_id: %s" % warning)
            client = client_from_options(params)
            session = authenticate(client, params)
            if not session.owned:
                # A given broker token is usually periodic (vault_bootstrap's -period): renewed here at half
                # its period, it lives as long as the broker mints at least that often (awx/README.md).
                try:
                    renew_self_if_due(client, session.token)
                except MinibusError as exc:
                    if renew_only:
                        raise
                    # Minting may still work (a token without the default policy cannot look itself up);
                    # if the token is expired, minting says so next.
                    display.warning("minibus.pki.vault_secret_id: the token was not renewed: %s" % exc.message)
            if renew_only:
                return []
            return [mint_bootstrap_secret_id(client, session.token, name, params["bootstrap_mount_point"],
                                             self.get_option("wrap_ttl"), self.get_option("metadata"),
                                             self.get_option("cidr_list"))["token"]
                    for name in names]
        except MinibusError as exc:
            raise AnsibleLookupError(exc.message)
        finally:
            if session is not None and session.owned:
                try:
                    revoke_self(client, session.token)
                except MinibusError:
                    pass  # the AppRole token expires on its own within token_ttl
            if client is not None:
                client.close()
