# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Helpers shared by the module_utils unit tests: self-signed certificates made with cryptography.

A plain module (not conftest) so that test files can import it by a name no other conftest.py shadows.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from ansible_collections.minibus.pki.plugins.module_utils import certs

UTC = datetime.timezone.utc
NOW = datetime.datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)


def new_key(key_type="ec", bits=256):
    # Key generation is the core's; the certificates around it are built here, independently.
    return certs.generate_private_key(key_type, bits)


def key_pem(key):
    return certs.private_key_pem(key)


def make_cert(key, common_name="host.example.org", dns=None, ips=None, not_before=None, not_after=None,
              serial=None, subject_extra=None, authority_key_id=None):
    """A self-signed certificate (PEM text). dns defaults to [common_name]; pass [] for no SAN.

    authority_key_id (bytes): an Authority Key Identifier extension with that key id.
    """
    not_before = not_before or NOW - datetime.timedelta(hours=1)
    not_after = not_after or not_before + datetime.timedelta(hours=25)
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    attributes += list(subject_extra or [])
    name = x509.Name(attributes)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(serial or x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_after))
    dns = [common_name] if dns is None else dns
    sans = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if authority_key_id is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier(authority_key_id, None, None), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode("ascii")
