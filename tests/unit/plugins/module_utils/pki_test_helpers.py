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


# --- a CA hierarchy as Vault's PKI makes it (key identifiers, keyUsage), and the broken variants ----------

_CA_USAGE = dict(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                 key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False)
_LEAF_USAGE = dict(_CA_USAGE, key_encipherment=True, key_agreement=True, key_cert_sign=False, crl_sign=False)


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_ids(builder, key, issuer_key):
    return (builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                           critical=False))


def make_ca(name, key, issuer=None, issuer_key=None, not_before=None, not_after=None, now=None,
            basic_constraints=True, path_length=None, key_cert_sign=True):
    """A CA certificate object (self-signed without issuer). basic_constraints=False leaves the extension out;
    key_cert_sign=False gives a keyUsage without keyCertSign."""
    now = now or datetime.datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(name))
               .issuer_name(issuer.subject if issuer is not None else _name(name)).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or now - datetime.timedelta(hours=24))
               .not_valid_after(not_after or now + datetime.timedelta(hours=240)))
    if basic_constraints:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
    builder = builder.add_extension(x509.KeyUsage(**dict(_CA_USAGE, key_cert_sign=key_cert_sign)), critical=True)
    builder = _key_ids(builder, key, issuer_key or key)
    return builder.sign(issuer_key or key, hashes.SHA256())


def make_leaf(key, issuer, issuer_key, cn="host1.example.org", dns=None, ips=None, not_before=None, lifetime=None,
              usages=None, ca=False, now=None, digital_signature=True):
    """A leaf certificate object signed by issuer. usages: ExtendedKeyUsage OIDs (None: no extension);
    ca=True marks it basicConstraints ca=True (a leaf posing as a CA); digital_signature=False leaves that bit
    out of its keyUsage."""
    now = now or datetime.datetime.now(UTC)
    not_before = not_before or now - datetime.timedelta(seconds=30)
    dns = [cn] if dns is None else dns
    sans = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_before + (lifetime or datetime.timedelta(hours=24)))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(**dict(_LEAF_USAGE, key_cert_sign=ca, digital_signature=digital_signature)),
                              critical=True))
    builder = _key_ids(builder, key, issuer_key)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())
