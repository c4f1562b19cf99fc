# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The environment fallbacks named here are applied by plugins/module_utils/options.py (one table),
    # on the host where the plugin runs: the managed host for modules, the controller for the lookup.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - Address of the Vault or OpenBao server, for example C(https://vault.example.com:8200).
      - Several addresses of one cluster may be given, as a list or comma-separated (the environment
        variables take a comma-separated list). They are tried in order; an address that cannot serve
        (connection refused or unreachable, TLS handshake failure, sealed, a standby that does not
        serve, a redirect) passes the request to the next one, and the address that served is asked
        first for the rest of the run. A login or unwrap that may have reached a node is never sent to
        another one, since its single-use secret may be spent. Every address must be C(https://) (see
        O(allow_insecure_http)) and is checked against the same O(ca_cert).
      - Every request sends back the newest storage index Vault answered with (C(X-Vault-Index), with
        C(X-Vault-Inconsistent=forward-active-node)), and the renewal keeps it with the secret id, so an
        OpenBao 2.7+ standby that serves reads but has not caught up forwards the request instead of
        answering from old data (a just-written secret id would look invalid there). Vault OSS and older
        OpenBao ignore it.
      - Falls back to the environment variable E(VAULT_ADDR), then E(BAO_ADDR).
      - A redirect (3xx) is never followed, whoever sends it. The request fails (or moves to the next
        address) with one sentence naming where the redirect pointed, and nothing is sent there.
    type: list
    elements: str
  ca_cert:
    description:
      - Path to the CA bundle that signed Vault's own TLS certificate.
      - Falls back to E(VAULT_CACERT), then E(BAO_CACERT). Without it the system trust store is used.
      - Checked before any request (unless O(validate_certs) is false). A file that is missing, unreadable,
        empty, or holds no PEM certificate that parses fails the task with one sentence naming the option (and
        the environment variable it came from) and the path.
    type: path
    aliases: [cacert]
  validate_certs:
    description:
      - Verify Vault's TLS certificate. Turning this off lets anyone on the path read every secret id
        and certificate request; only do it against a throw-away dev server. A run that talks to Vault
        with it off returns a warning.
    type: bool
    default: true
  allow_insecure_http:
    description:
      - Accept a plain C(http://) O(url). Without it such a URL is refused before any request, because
        secret ids, tokens and the CA would cross the network in clear. For a lab only; a run that
        talks to Vault over http returns a warning.
    type: bool
    default: false
  namespace:
    description:
      - Vault Enterprise namespace. Falls back to E(VAULT_NAMESPACE), then E(BAO_NAMESPACE).
    type: str
  timeout:
    description:
      - Wall-clock deadline in seconds for one request to one address, covering connect, TLS handshake,
        headers and body. A server that drips its answer slowly is cut at this deadline. A string of
        digits such as C("30") is accepted.
      - Answers larger than 1 MiB are refused.
    type: int
    default: 30
  total_timeout:
    description:
      - Seconds that all Vault requests of one run together may take (one module run, one lookup call, one
        renewer run), retries, back-off and failover included. When it runs out the run fails with one
        sentence; a request in flight is cut.
      - Unset, it is O(timeout) x (O(retries) + 1) x the number of addresses in O(url).
      - Falls back to E(MINIBUS_VAULT_TOTAL_TIMEOUT).
    type: int
  retries:
    description:
      - How many times a request is retried, with exponential back-off from 0.5 s, when Vault cannot be
        reached, answers 429, is sealed, or fails with a 5xx error.
      - A request that spends something single-use (an AppRole login with a secret id, an unwrap) is
        retried only when Vault cannot have acted on it (the connection was never made, 429, sealed).
        After a time-out while waiting for the answer or a dropped connection the secret id may already
        be spent, so the task fails and says so; get a new wrapped secret id (the next run of the
        M(minibus.pki.vault_pki_issue) based role does that).
    type: int
    default: 3
"""

    # Only for plugins that run on the controller (the lookup): module_defaults never reaches a
    # lookup, so these are its Ansible ways to be configured. Precedence, highest first: the lookup's
    # keyword, a variable, the MINIBUS_PKI_VAULT_* variable, ansible.cfg, then the VAULT_*/BAO_*
    # fallbacks above (applied by options.resolve_env after get_option).
    PLUGINS = r"""
options:
  url:
    env:
      - name: MINIBUS_PKI_VAULT_URL
    ini:
      - section: minibus_pki_vault
        key: url
    vars:
      - name: minibus_pki_vault_url
  ca_cert:
    env:
      - name: MINIBUS_PKI_VAULT_CA_CERT
    ini:
      - section: minibus_pki_vault
        key: ca_cert
    vars:
      - name: minibus_pki_vault_ca_cert
  validate_certs:
    env:
      - name: MINIBUS_PKI_VAULT_VALIDATE_CERTS
    ini:
      - section: minibus_pki_vault
        key: validate_certs
    vars:
      - name: minibus_pki_vault_validate_certs
  allow_insecure_http:
    env:
      - name: MINIBUS_PKI_VAULT_ALLOW_INSECURE_HTTP
    ini:
      - section: minibus_pki_vault
        key: allow_insecure_http
    vars:
      - name: minibus_pki_vault_allow_insecure_http
  namespace:
    env:
      - name: MINIBUS_PKI_VAULT_NAMESPACE
    ini:
      - section: minibus_pki_vault
        key: namespace
    vars:
      - name: minibus_pki_vault_namespace
  timeout:
    env:
      - name: MINIBUS_PKI_VAULT_TIMEOUT
    ini:
      - section: minibus_pki_vault
        key: timeout
    vars:
      - name: minibus_pki_vault_timeout
  retries:
    env:
      - name: MINIBUS_PKI_VAULT_RETRIES
    ini:
      - section: minibus_pki_vault
        key: retries
    vars:
      - name: minibus_pki_vault_retries
  total_timeout:
    ini:
      - section: minibus_pki_vault
        key: total_timeout
    vars:
      - name: minibus_pki_vault_total_timeout
"""
