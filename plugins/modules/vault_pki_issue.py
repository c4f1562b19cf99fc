#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: vault_pki_issue
short_description: Keep a short-lived certificate from a Vault or OpenBao PKI on the host, renewing it when due
version_added: 0.1.0
description:
  - Logs in (token, or AppRole with a response-wrapped single-use secret id), sends a CSR for a key made on
    the host to C(<engine_mount_point>/sign/<role_name>) (or asks C(<engine_mount_point>/issue/<role_name>)
    for a key made by Vault), writes certificate, key, CA chain and issuing CA so that they change together,
    and revokes the token it obtained.
  - Makes no Vault request at all while the certificate on disk is valid, matches the requested names and
    key, and has more than O(renew_before) left.
  - The files of one issuance become visible together. Each issuance goes into a new version directory
    C(<dir of cert_path>/.minibus/<cert file name>/v-<time>-<serial>/); the paths O(cert_path),
    O(key_path), O(chain_path) and O(ca_path) are symlinks through one C(current) symlink that is replaced
    with a single atomic C(rename). No reader can resolve a new certificate next to an old key. The previous
    version is kept, older ones are removed.
  - Run as root with O(owner) naming another account, the module forks a child that drops to that account
    (supplementary groups, group, user; it checks it cannot become root again) and does all of the work
    there, the Vault requests included; root only relays the result. Root never opens, chowns, removes or
    follows anything in a store that account can change. The directory of O(cert_path) must then exist and be
    writable by O(owner), and O(owner) must be able to read O(ca_cert) and O(trust_anchor_path). Run as root
    without O(owner), the module refuses a store directory that another account owns.
  - Symbolic links in the store that the module did not make (a symlinked C(.minibus), C(.minibus/<name>) or
    version directory, a lock file that is a link) are refused with one sentence before any Vault request.
  - Every answer from Vault is checked before anything is written, see O(trust_anchor_path).
  - With O(secret_id_store), every run that talks to Vault also mints the next secret id (response-wrapped,
    creation path checked), and stores it atomically (mode 0600) before the certificate is requested. The
    on-host renewer of the R(minibus.pki.minibus_certs,ansible_collections.minibus.pki.minibus_certs_role) role uses that store. Without explicit credentials
    the module logs in with the stored secret id, as the renewer does.
author:
  - minibus.pki maintainers (@minibus-pki)
extends_documentation_fragment:
  - minibus.pki.connection
  - minibus.pki.auth
  - ansible.builtin.files
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
    details: Decides and reports without any Vault request and without writing.
  diff_mode:
    support: full
    details: Shows parsed fields (subject, names, serial, not_after, key), never PEM.
  platform:
    platforms: posix
requirements:
  - hvac (Debian 12's python3-hvac 0.11.2 or newer)
  - cryptography (Debian 12's python3-cryptography 38 or newer)
options:
  engine_mount_point:
    description: Where the PKI secrets engine is mounted.
    type: str
    default: pki_int
  role_name:
    description: The PKI role to sign or issue with.
    type: str
    default: minibus-server
  common_name:
    description:
      - The certificate's common name, usually the host name; it must match the PKI role's allowed names.
    type: str
    required: true
  alt_names:
    description: Additional DNS names. The common name is always a DNS name of the certificate too.
    type: list
    elements: str
    default: []
  ip_sans:
    description: IP addresses to put in the certificate.
    type: list
    elements: str
    default: []
  ttl:
    description:
      - Requested lifetime, such as C(24h). If Vault caps it (the PKI role's max_ttl is lower), the task fails
        and writes nothing.
    type: str
    default: 24h
  method:
    description:
      - C(sign) makes the private key on the host and sends only a CSR; the key never leaves the host.
      - C(issue) lets Vault make the key, which then travels in Vault's answer.
    type: str
    choices: [sign, issue]
    default: sign
  key_type:
    description: The key algorithm. C(ec) is NIST P-256 unless O(key_bits=384).
    type: str
    choices: [ec, rsa, ed25519]
    default: ec
  key_bits:
    description:
      - Key size. C(ec) 256 (default) or 384; C(rsa) 2048 (default), 3072 or 4096; ignored for C(ed25519).
    type: int
  subject:
    description:
      - Subject fields for the CSR, with keys C(country), C(state), C(locality), C(organization),
        C(organizational_unit).
      - Vault's C(sign) keeps only CN and SANs from a CSR; ST, L, O, OU and C come from the PKI role's
        C(province), C(locality), C(organization), C(ou) and C(country). The module warns when the
        certificate lacks a field asked for here.
    type: dict
    default: {}
  cert_path:
    description: Where the certificate is read by its users (a symlink into the store).
    type: path
    required: true
  key_path:
    description: Where the private key is read by its users (a symlink into the store).
    type: path
    required: true
  chain_path:
    description: Where the CA chain Vault returns (issuing CA up to the root) is written.
    type: path
  ca_path:
    description:
      - Where the CA certificate that peers are checked against is written (for rsyslog's CA file).
      - With O(trust_anchor_path) this is the content of that file, never a CA from Vault's answer; without
        it, the issuing CA from the answer.
    type: path
  fullchain_path:
    description:
      - Where the certificate followed by its intermediate CA certificates (without the root) is written, in
        the same version directory as the others and switched with them, for servers that present their chain.
    type: path
  trust_anchor_path:
    description:
      - A PEM file on the host with the root CA certificate(s) this host's certificates must chain to.
      - Every answer is checked before anything is written; the certificate parses, matches the key, carries
        exactly the common name and the DNS and IP names asked for, is valid now (5 minutes of clock skew
        allowed), lives about the O(ttl) asked, carries every usage in O(extended_key_usage), and is signed
        by the issuing CA in the answer, whose chain is in order and valid. With this option the certificate
        must also form a valid RFC 5280 path through the answer's CAs to one of these anchors (signatures,
        validity, basicConstraints and their path length, keyUsage keyCertSign on every CA, digitalSignature
        and no CA flag on the certificate, its extended key usage), and O(ca_path) gets this file's content.
        Where the host's cryptography has C(cryptography.x509.verification) (43 and newer) that library builds
        and checks the path; on older ones (Debian 12) the module checks these rules itself.
      - Without it the chain is not pinned, and the module returns a warning saying so.
    type: path
  extended_key_usage:
    description:
      - The extended key usages the certificate must carry for its side of TLS, V(clientAuth) for a client
        and V(serverAuth) for a log server. An answer without one of them is refused and nothing is written.
      - Empty, the usage is not checked, except that with O(trust_anchor_path) the certificate's own
        extended key usage must allow V(clientAuth) or V(serverAuth).
      - The R(minibus.pki.minibus_certs,ansible_collections.minibus.pki.minibus_certs_role) role sets it from
        its rsyslog role.
    type: list
    elements: str
    choices: [clientAuth, serverAuth]
    default: []
  mode:
    description:
      - The private key's mode (default C(0600)). Certificate, chain and CA files are C(0644).
      - O(owner) and O(group) apply to every file and to the store directories.
    type: raw
  secret_id_store:
    description:
      - Path of the renewal secret id store (JSON, mode 0600, owned by O(owner)). When set, every run that talks
        to Vault replaces the stored secret id with a new one, and a missing, spent or expired store counts as
        a reason to act (reported in check mode). Needs O(approle_name).
    type: path
  secret_id_wrap_ttl:
    description: Wrap TTL of the next secret id that the module mints for itself and unwraps at once.
    type: str
    default: 60s
  renew_before:
    description:
      - Renew when less than this is left, such as C(8h). Default one third of the certificate's lifetime
        (8 h of retries for a 25 h certificate, against 1 h with a plain daily renewal).
    type: str
  force:
    description: Request a new certificate even if the current one is good.
    type: bool
    default: false
notes:
  - The private key is never returned. There is no option to return it.
  - Bad options, unreachable Vault, refused names or key types, capped TTLs, unwritable paths and answers that
    fail a check (junk, other names, expired, not yet valid, far too long, foreign chain, larger than 1 MiB)
    fail with one sentence and change no file.
seealso:
  - plugin: minibus.pki.vault_secret_id
    plugin_type: lookup
    description: Mints the response-wrapped secret id on the controller that O(secret_id_wrapping_token) takes.
  - module: minibus.pki.vault_unwrap
    description: Unwraps a wrapping token after the same creation-path check.
  - module: community.hashi_vault.vault_pki_generate_certificate
    description: Has Vault generate key and certificate (C(issue)) and returns them; no CSR, no file handling, no renewal decision.
  - module: community.hashi_vault.vault_login
    description: Logs in with many auth methods and returns the token.
  - module: community.crypto.openssl_privatekey
    description: Makes a private key on the host, for a certificate workflow of your own.
  - module: community.crypto.openssl_csr
    description: Makes a certificate signing request on the host.
  - module: community.crypto.x509_certificate_info
    description: Reads the fields of the certificate this module installed.
"""

EXAMPLES = r"""
- name: Get this host's certificate with a wrapped secret id minted on the controller
  minibus.pki.vault_pki_issue:
    url: https://vault.example.com:8200
    role_id: minibus/csr
    approle_name: minibus-generate-sign-server-keys
    secret_id_wrapping_token: "{{ lookup('minibus.pki.vault_secret_id', 'minibus-generate-sign-server-keys') }}"
    common_name: "{{ ansible_facts['fqdn'] }}"
    subject:
      state: rengthining
      locality: iberty
    cert_path: /var/lib/minibus-certs/tls/cert.pem
    key_path: /var/lib/minibus-certs/tls/key.pem
    chain_path: /var/lib/minibus-certs/tls/chain.pem
    owner: minibus-certs
  no_log: true

- name: Let Vault make an RSA key instead (issue mode), with a token from the environment
  minibus.pki.vault_pki_issue:
    method: issue
    key_type: rsa
    key_bits: 3072
    common_name: host1.minibus.test
    cert_path: /etc/ssl/minibus/cert.pem
    key_path: /etc/ssl/minibus/key.pem
"""

RETURN = r"""
reason:
  description: Why the module (re)issued, or why it did not.
  returned: always
  type: str
  sample: the certificate expires in 28000s, within renew_before (30000s)
issued:
  description: Whether a new certificate was written.
  returned: always
  type: bool
secret_id_rotated:
  description: Whether the secret id store was given a new secret id.
  returned: always
  type: bool
serial:
  description: Serial number of the certificate now in place.
  returned: when a certificate is in place
  type: str
  sample: 35:ea:10:2f:73:38:a0:ad
subject:
  description: Subject of the certificate now in place (RFC 4514).
  returned: when a certificate is in place
  type: str
  sample: CN=host1.minibus.test,L=iberty,ST=rengthining
not_before:
  description: Start of validity (UTC).
  returned: when a certificate is in place
  type: str
not_after:
  description: End of validity (UTC).
  returned: when a certificate is in place
  type: str
seconds_remaining:
  description: Seconds until the certificate expires.
  returned: always
  type: int
vault_requests:
  description: How many HTTP requests were sent to Vault (0 while the certificate is good).
  returned: always
  type: int
privileges_dropped:
  description: Whether the work ran in a child process as O(owner) because the module ran as root.
  returned: when the module ran as root with another owner
  type: bool
"""

import os

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.minibus.pki.plugins.module_utils.certs import CRYPTOGRAPHY_IMPORT_ERROR
from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError
from ansible_collections.minibus.pki.plugins.module_utils.issuance import CERTIFICATE_SPEC, ensure_certificate
from ansible_collections.minibus.pki.plugins.module_utils.options import AUTH_SPEC, CONNECTION_SPEC, resolve_env
from ansible_collections.minibus.pki.plugins.module_utils.vault import HVAC_IMPORT_ERROR


_FS_OPTIONS = ("seuser", "serole", "setype", "selevel", "attributes")


def _fs_attributes(module, result):
    """SELinux context and file attributes from the common file options (owner/mode are set by the core).

    Only when asked for: this runs as root and resolves links through the store, which the owner can change.
    """
    if not result["issued"] or not any(module.params.get(o) for o in _FS_OPTIONS):
        return
    if result.get("privileges_dropped"):
        module.warn("SELinux and file attribute options are not applied to a store that another account owns: "
                    "root does not follow paths that account can change.")
        return
    for option in ("cert_path", "key_path", "chain_path", "ca_path", "fullchain_path"):
        if module.params[option]:
            real = os.path.realpath(module.params[option])
            file_args = module.load_file_common_arguments(module.params, path=real)
            file_args["mode"] = None
            file_args["owner"] = file_args["group"] = None
            module.set_fs_attributes_if_different(file_args, False)


def main():
    argument_spec = dict(CONNECTION_SPEC)
    argument_spec.update(AUTH_SPEC)
    argument_spec.update(CERTIFICATE_SPEC)
    module = AnsibleModule(argument_spec=argument_spec, add_file_common_args=True, supports_check_mode=True)
    if HVAC_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("hvac"))
    if CRYPTOGRAPHY_IMPORT_ERROR:
        module.fail_json(msg=missing_required_lib("cryptography"))
    params = resolve_env(dict(module.params), os.environ)
    try:
        result = ensure_certificate(params, check_mode=module.check_mode)
    except MinibusError as exc:
        module.fail_json(msg=exc.message)
    except Exception as exc:  # pylint: disable=broad-except
        # A bug, not bad input: still one line, never a traceback that could carry a secret.
        module.fail_json(msg="vault_pki_issue failed with an unexpected %s (a bug: please report it); the "
                             "certificate files are the old set or the new one, never a mix." % type(exc).__name__)
    _fs_attributes(module, result)
    for warning in result.pop("warnings"):
        module.warn(warning)
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
