# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The dev server's TLS files across runs of one checkout: the CA is kept while it outlives the
server certificate, and made again before it would expire (a checkout used again a year later)."""

from __future__ import absolute_import, division, print_function

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from labs.vault import SERVER_CERT_DAYS, make_tls


def _load(path):
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


def _shorten_ca(directory, days_left):
    """Re-sign the lab's CA with its own key so that it ends days_left days from now."""
    ca = _load(os.path.join(directory, "ca.pem"))
    with open(os.path.join(directory, "ca-key.pem"), "rb") as handle:
        key = serialization.load_pem_private_key(handle.read(), password=None)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(ca.subject).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(days=300))
               .not_valid_after(now + datetime.timedelta(days=days_left)))
    for extension in ca.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    with open(os.path.join(directory, "ca.pem"), "wb") as handle:
        handle.write(builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))


def _server_issued_by_ca(directory):
    server, ca = _load(os.path.join(directory, "server.pem")), _load(os.path.join(directory, "ca.pem"))
    assert server.issuer == ca.subject
    ca.public_key().verify(server.signature, server.tbs_certificate_bytes, ec.ECDSA(server.signature_hash_algorithm))


def test_a_ca_that_outlives_the_server_certificate_is_kept(tmp_path):
    directory = str(tmp_path)
    make_tls(directory)
    first = _load(os.path.join(directory, "ca.pem")).serial_number
    make_tls(directory)
    assert _load(os.path.join(directory, "ca.pem")).serial_number == first
    _server_issued_by_ca(directory)


def test_a_ca_ending_before_the_server_certificate_is_made_again(tmp_path):
    directory = str(tmp_path)
    make_tls(directory)
    _shorten_ca(directory, days_left=SERVER_CERT_DAYS - 1)
    shortened = _load(os.path.join(directory, "ca.pem")).serial_number
    make_tls(directory)
    renewed = _load(os.path.join(directory, "ca.pem"))
    assert renewed.serial_number != shortened
    end = getattr(renewed, "not_valid_after_utc", None) or renewed.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    assert end > datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=300)
    _server_issued_by_ca(directory)
