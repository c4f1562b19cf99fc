# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress
import re

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from ansible_collections.minibus.pki.plugins.module_utils import certs
from ansible_collections.minibus.pki.plugins.module_utils.errors import InvalidInput

from pki_test_helpers import NOW, UTC, key_pem, make_cert, new_key

H = datetime.timedelta(hours=1)


# --- parse_duration -------------------------------------------------------------------------

@pytest.mark.parametrize("value,seconds", [
    ("24h", 86400), ("90m", 5400), ("1h30m", 5400), (3600, 3600), ("3600", 3600), ("3600s", 3600),
    ("1d", 86400), ("1d2h", 93600),
])
def test_parse_duration(value, seconds):
    assert certs.parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["", "abc", 0, -5, True, False, "0s", "1x", "h"])
def test_parse_duration_rejects(value):
    with pytest.raises(InvalidInput) as info:
        certs.parse_duration(value, "ttl")
    assert "ttl" in info.value.message
    assert "\n" not in info.value.message


# --- validate_key / validate_subject -------------------------------------------------------

@pytest.mark.parametrize("key_type,bits,expected", [
    ("ec", None, 256), ("ec", 0, 256), ("ec", 384, 384), ("rsa", None, 2048), ("rsa", 4096, 4096),
    ("ed25519", None, 0), ("ed25519", 2048, 0),
])
def test_validate_key(key_type, bits, expected):
    assert certs.validate_key(key_type, bits) == expected


@pytest.mark.parametrize("key_type,bits", [("ec", 2048), ("rsa", 1024), ("dsa", None), ("dsa", 2048)])
def test_validate_key_rejects(key_type, bits):
    with pytest.raises(InvalidInput):
        certs.validate_key(key_type, bits)


def test_validate_subject_accepts_and_copies():
    subject = {"country": "DE", "state": "rengthining", "locality": "iberty"}
    result = certs.validate_subject(subject)
    assert result == subject and result is not subject
    assert certs.validate_subject(None) == {}


@pytest.mark.parametrize("subject,needle", [
    ({"planet": "Mars"}, "planet"),
    ({"state": ""}, "state"),
    ({"state": "   "}, "state"),
    ({"locality": None}, "locality"),
    ({"country": "DEU"}, "country"),
    ({"country": "D"}, "country"),
])
def test_validate_subject_rejects(subject, needle):
    with pytest.raises(InvalidInput) as info:
        certs.validate_subject(subject)
    assert needle in info.value.message


# --- build_csr -----------------------------------------------------------------------------

@pytest.mark.parametrize("key_type,bits", [("ec", 256), ("ec", 384), ("rsa", 2048), ("ed25519", 0)])
def test_build_csr(key_type, bits):
    key = certs.generate_private_key(key_type, bits)
    pem = certs.build_csr(key, "host.example.org", alt_names=["alt.example.org", "host.example.org", "10.1.1.1"],
                          ip_sans=["192.0.2.7", "2001:db8::1"],
                          subject={"state": "rengthining", "locality": "iberty", "country": "DE"})
    csr = x509.load_pem_x509_csr(pem.encode("ascii"))
    assert csr.is_signature_valid
    assert csr.public_key().public_bytes(*_spki()) == key.public_key().public_bytes(*_spki())
    subject = csr.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "host.example.org"
    assert subject.get_attributes_for_oid(NameOID.STATE_OR_PROVINCE_NAME)[0].value == "rengthining"
    assert subject.get_attributes_for_oid(NameOID.LOCALITY_NAME)[0].value == "iberty"
    assert subject.get_attributes_for_oid(NameOID.COUNTRY_NAME)[0].value == "DE"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME) == []
    san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["host.example.org", "alt.example.org"]
    expected_ips = [ipaddress.ip_address("192.0.2.7"), ipaddress.ip_address("2001:db8::1")]
    assert san.get_values_for_type(x509.IPAddress) == expected_ips
    if key_type == "ed25519":
        assert isinstance(csr.public_key(), ed25519.Ed25519PublicKey)
    elif key_type == "rsa":
        assert isinstance(csr.public_key(), rsa.RSAPublicKey) and csr.public_key().key_size == bits
    else:
        assert isinstance(csr.public_key(), ec.EllipticCurvePublicKey) and csr.public_key().curve.key_size == bits


def _spki():
    from cryptography.hazmat.primitives import serialization
    return serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


def test_private_key_pem_roundtrip(ec_key):
    text = certs.private_key_pem(ec_key)
    assert text.startswith("-----BEGIN PRIVATE KEY-----")
    loaded = certs.load_private_key(text)
    assert certs.key_matches(x509.load_pem_x509_certificate(make_cert(ec_key).encode()), loaded)


# --- needs_renewal -------------------------------------------------------------------------

def _decide(cert, key, request, **kwargs):
    kwargs.setdefault("now", NOW)
    return certs.needs_renewal(cert, key, request, **kwargs)


def test_needs_renewal_no_cert(ec_key, request_for):
    decision = _decide(None, key_pem(ec_key), request_for())
    assert decision.needed and "no certificate" in decision.reason and decision.current is None


def test_needs_renewal_garbage_cert(ec_key, request_for):
    decision = _decide("-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n",
                       key_pem(ec_key), request_for())
    assert decision.needed and "not a readable PEM certificate" in decision.reason
    decision = _decide(b"hello", key_pem(ec_key), request_for())
    assert decision.needed and "not a readable PEM certificate" in decision.reason


def test_needs_renewal_missing_or_garbage_key(ec_key, request_for):
    cert = make_cert(ec_key)
    decision = _decide(cert, None, request_for())
    assert decision.needed and "no private key" in decision.reason
    decision = _decide(cert, "garbage", request_for())
    assert decision.needed and "not a readable unencrypted private key" in decision.reason


def test_needs_renewal_key_mismatch(ec_key, request_for):
    decision = _decide(make_cert(ec_key), key_pem(new_key("ec")), request_for())
    assert decision.needed and decision.reason == "the private key does not match the certificate"
    assert decision.current["dns_names"] == ["host.example.org"]


def test_needs_renewal_cn_change(ec_key, request_for):
    decision = _decide(make_cert(ec_key), key_pem(ec_key), request_for(common_name="other.example.org"))
    assert decision.needed
    assert decision.reason == "the common name changed from host.example.org to other.example.org"


def test_needs_renewal_missing_san(ec_key, request_for):
    cert = make_cert(ec_key, dns=["host.example.org"], ips=["192.0.2.1"])
    decision = _decide(cert, key_pem(ec_key), request_for(alt_names=["alt.example.org"]))
    assert decision.needed and "alt.example.org" in decision.reason and "lacks the names" in decision.reason
    decision = _decide(cert, key_pem(ec_key), request_for(ip_sans=["192.0.2.2"]))
    assert decision.needed and "192.0.2.2" in decision.reason
    # present names (IP written differently) are fine
    decision = _decide(cert, key_pem(ec_key), request_for(ip_sans=["192.0.2.1"]))
    assert not decision.needed


def test_needs_renewal_no_san_at_all(ec_key, request_for):
    decision = _decide(make_cert(ec_key, dns=[]), key_pem(ec_key), request_for())
    assert decision.needed and "host.example.org" in decision.reason


def test_needs_renewal_key_type_change(ec_key, request_for):
    decision = _decide(make_cert(ec_key), key_pem(ec_key), request_for(key_type="rsa", key_bits=2048))
    assert decision.needed and decision.reason == "the key is ec 256, not the requested rsa 2048"
    decision = _decide(make_cert(ec_key), key_pem(ec_key), request_for(key_bits=384))
    assert decision.needed and "ec 384" in decision.reason


def test_needs_renewal_ed25519_ignores_bits(request_for):
    key = new_key("ed25519")
    decision = _decide(make_cert(key), key_pem(key), request_for(key_type="ed25519", key_bits=None))
    assert not decision.needed, decision.reason


def test_needs_renewal_expired(ec_key, request_for):
    cert = make_cert(ec_key, not_before=NOW - 30 * H, not_after=NOW - H)
    decision = _decide(cert, key_pem(ec_key), request_for())
    assert decision.needed and decision.reason == "the certificate has expired"
    assert decision.current["seconds_remaining"] == 0


def test_needs_renewal_not_yet_valid(ec_key, request_for):
    cert = make_cert(ec_key, not_before=NOW + H, not_after=NOW + 25 * H)
    decision = _decide(cert, key_pem(ec_key), request_for())
    assert decision.needed and "not valid yet" in decision.reason


def test_needs_renewal_default_renew_before_is_a_third(ec_key, request_for):
    # 30 h lifetime: a third is 10 h.
    inside = make_cert(ec_key, not_before=NOW - 20 * H, not_after=NOW + 10 * H)
    decision = _decide(inside, key_pem(ec_key), request_for())
    assert decision.needed and "within renew_before (36000s)" in decision.reason
    outside = make_cert(ec_key, not_before=NOW - 19 * H, not_after=NOW + 11 * H)
    decision = _decide(outside, key_pem(ec_key), request_for())
    assert not decision.needed
    assert decision.reason == "the certificate is valid for 39600s more (renews 36000s before it expires)"


def test_needs_renewal_explicit_renew_before(ec_key, request_for):
    cert = make_cert(ec_key, not_before=NOW - H, not_after=NOW + 24 * H)
    assert not _decide(cert, key_pem(ec_key), request_for()).needed
    decision = _decide(cert, key_pem(ec_key), request_for(), renew_before=25 * 3600)
    assert decision.needed and "within renew_before (90000s)" in decision.reason
    decision = _decide(cert, key_pem(ec_key), request_for(), renew_before=3600)
    assert not decision.needed and "renews 3600s before" in decision.reason


def test_needs_renewal_force(ec_key, request_for):
    cert = make_cert(ec_key)
    decision = _decide(cert, key_pem(ec_key), request_for(), force=True)
    assert decision.needed and decision.reason == "force is set"
    assert decision.current["serial"]


def test_needs_renewal_valid(ec_key, request_for):
    cert = make_cert(ec_key, dns=["host.example.org", "alt.example.org"], ips=["2001:db8::1"])
    decision = _decide(cert, key_pem(ec_key), request_for(alt_names=["alt.example.org"], ip_sans=["2001:db8:0::1"]))
    assert decision.needed is False
    assert decision.reason.startswith("the certificate is valid for ")
    assert decision.current["dns_names"] == ["host.example.org", "alt.example.org"]


# --- missing_subject_fields / describe -----------------------------------------------------

def test_missing_subject_fields(ec_key):
    cert = x509.load_pem_x509_certificate(make_cert(
        ec_key, subject_extra=[x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "rengthining")]).encode())
    assert certs.missing_subject_fields(cert, {}) == []
    assert certs.missing_subject_fields(cert, {"state": "rengthining"}) == []
    assert certs.missing_subject_fields(cert, {"state": "rengthining", "locality": "iberty", "country": "DE"}) == [
        "C=DE", "L=iberty"]
    assert certs.missing_subject_fields(cert, {"state": "other"}) == ["ST=other"]


def test_describe(ec_key):
    cest = datetime.timezone(datetime.timedelta(hours=2))
    not_before = datetime.datetime(2030, 6, 1, 10, 0, 0, tzinfo=cest)  # 08:00Z
    not_after = datetime.datetime(2030, 6, 2, 11, 0, 0, tzinfo=cest)   # 09:00Z next day
    pem = make_cert(ec_key, dns=["host.example.org"], ips=["192.0.2.9"], not_before=not_before,
                    not_after=not_after, serial=0x0abc12)
    info = certs.describe(certs.load_certificate(pem), now=datetime.datetime(2030, 6, 2, 8, 0, 0, tzinfo=UTC))
    assert info["serial"] == "0a:bc:12"
    assert info["not_before"] == "2030-06-01T08:00:00Z"
    assert info["not_after"] == "2030-06-02T09:00:00Z"
    assert info["seconds_remaining"] == 3600
    assert info["lifetime_seconds"] == 25 * 3600
    assert info["subject"] == "CN=host.example.org"
    assert info["dns_names"] == ["host.example.org"] and info["ip_addresses"] == ["192.0.2.9"]
    assert (info["key_type"], info["key_bits"]) == ("ec", 256)
    assert "PEM" not in repr(info)


def test_describe_serial_format(ec_key):
    info = certs.describe(certs.load_certificate(make_cert(ec_key, serial=0x1f2e3d4c5b6a)), now=NOW)
    assert re.match(r"^([0-9a-f]{2}:)+[0-9a-f]{2}$", info["serial"])
    assert info["serial"] == "1f:2e:3d:4c:5b:6a"


def test_describe_names_the_issuing_ca_by_subject_and_key_id(ec_key):
    with_akid = certs.describe(certs.load_certificate(make_cert(ec_key, authority_key_id=b"\x0a\xbc\xde")), now=NOW)
    assert with_akid["issuer"] == "CN=host.example.org"
    assert with_akid["authority_key_id"] == "0a:bc:de"
    assert certs.describe(certs.load_certificate(make_cert(ec_key)), now=NOW)["authority_key_id"] is None
