# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Keys, CSRs, certificate parsing and the renewal decision. Works with cryptography 38 (Debian 12) and newer."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress
import re
import traceback

from .errors import InvalidInput

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.x509.oid import NameOID
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:  # the modules turn this into Ansible's "missing required library" error
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

UTC = datetime.timezone.utc

# key_type -> allowed key_bits (first is the default)
KEY_SIZES = {"ec": (256, 384), "rsa": (2048, 3072, 4096), "ed25519": (0,)}

SUBJECT_FIELDS = (
    ("country", "C"),
    ("state", "ST"),
    ("locality", "L"),
    ("organization", "O"),
    ("organizational_unit", "OU"),
)

_DURATION = re.compile(r"^\s*(?:(\d+)d)?\s*(?:(\d+)h)?\s*(?:(\d+)m)?\s*(?:(\d+)s?)?\s*$")


def parse_duration(value, name="duration"):
    """Seconds from 3600, '3600', '3600s', '90m', '24h', '1d', '1h30m'."""
    if isinstance(value, bool):
        raise InvalidInput("%s must be a duration such as 24h, not a boolean." % name)
    if isinstance(value, (int, float)):
        seconds = int(value)
    else:
        match = _DURATION.match(str(value))
        if not match or not any(match.groups()):
            raise InvalidInput("%s %r is not a duration: write it like 24h, 90m or 3600s." % (name, value))
        days, hours, minutes, secs = (int(g or 0) for g in match.groups())
        seconds = ((days * 24 + hours) * 60 + minutes) * 60 + secs
    if seconds <= 0:
        raise InvalidInput("%s must be longer than zero." % name)
    return seconds


def validate_key(key_type, key_bits):
    """Return the key size to use, or raise InvalidInput."""
    if key_type not in KEY_SIZES:
        raise InvalidInput("key_type %r is not supported: use ec, rsa or ed25519." % (key_type,))
    sizes = KEY_SIZES[key_type]
    if key_type == "ed25519":
        return 0
    if key_bits in (None, 0):
        return sizes[0]
    if key_bits not in sizes:
        raise InvalidInput("key_bits %s does not fit key_type %s: use one of %s."
                           % (key_bits, key_type, ", ".join(str(s) for s in sizes)))
    return key_bits


def validate_subject(subject):
    subject = dict(subject or {})
    known = dict(SUBJECT_FIELDS)
    for field, value in subject.items():
        if field not in known:
            raise InvalidInput("subject field %r is unknown: use %s." % (field, ", ".join(known)))
        if value is None or not str(value).strip():
            raise InvalidInput("subject field %s is empty: give it a value or leave it out." % field)
    if subject.get("country") and len(str(subject["country"])) != 2:
        raise InvalidInput("subject country must be a two-letter code such as DE.")
    return subject


def generate_private_key(key_type, key_bits):
    if key_type == "ec":
        curve = ec.SECP384R1() if key_bits == 384 else ec.SECP256R1()
        return ec.generate_private_key(curve)
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=key_bits)
    return ed25519.Ed25519PrivateKey.generate()


def private_key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode("ascii")


def load_private_key(pem):
    if isinstance(pem, str):
        pem = pem.encode("ascii")
    return serialization.load_pem_private_key(pem, password=None)


def build_csr(key, common_name, alt_names=None, ip_sans=None, subject=None):
    """A CSR whose subject carries the requested fields (ST, L, ...) and the CN, with DNS/IP SANs."""
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    oid_of = {"country": NameOID.COUNTRY_NAME, "state": NameOID.STATE_OR_PROVINCE_NAME,
              "locality": NameOID.LOCALITY_NAME, "organization": NameOID.ORGANIZATION_NAME,
              "organizational_unit": NameOID.ORGANIZATIONAL_UNIT_NAME}
    for field, _short in SUBJECT_FIELDS:
        if (subject or {}).get(field):
            attributes.append(x509.NameAttribute(oid_of[field], str(subject[field])))
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes))
    sans = [x509.DNSName(n) for n in _dns_names(common_name, alt_names)]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_sans or []]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm).public_bytes(serialization.Encoding.PEM).decode("ascii")


def _dns_names(common_name, alt_names):
    names = []
    for name in [common_name] + list(alt_names or []):
        if name and name not in names and not _is_ip(name):
            names.append(name)
    return names


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def load_certificate(pem):
    if isinstance(pem, str):
        pem = pem.encode("ascii")
    return x509.load_pem_x509_certificate(pem)


def _utc(cert, name):
    value = getattr(cert, name + "_utc", None)  # cryptography >= 42
    if value is None:
        value = getattr(cert, name).replace(tzinfo=UTC)
    return value


def key_description(public_key):
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ec", public_key.curve.key_size
    if isinstance(public_key, rsa.RSAPublicKey):
        return "rsa", public_key.key_size
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "ed25519", 0
    return type(public_key).__name__, 0


def _public_bytes(public_key):
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_matches(cert, key):
    return _public_bytes(cert.public_key()) == _public_bytes(key.public_key())


def describe(cert, now=None):
    """The parsed fields shown in returns and diffs (never PEM)."""
    now = now or datetime.datetime.now(UTC)
    not_before, not_after = _utc(cert, "not_valid_before"), _utc(cert, "not_valid_after")
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        dns = san.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        dns, ips = [], []
    key_type, key_bits = key_description(cert.public_key())
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": _serial_text(cert.serial_number),
        "not_before": not_before.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds_remaining": max(0, int((not_after - now).total_seconds())),
        "lifetime_seconds": int((not_after - not_before).total_seconds()),
        "dns_names": dns,
        "ip_addresses": ips,
        "key_type": key_type,
        "key_bits": key_bits,
    }


def _serial_text(number):
    text = "%x" % number
    text = ("0" * (len(text) % 2)) + text
    return ":".join(text[i:i + 2] for i in range(0, len(text), 2))


def subject_value(cert, short_name):
    oid = {"C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "L": NameOID.LOCALITY_NAME,
           "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
           "CN": NameOID.COMMON_NAME}[short_name]
    values = cert.subject.get_attributes_for_oid(oid)
    return values[0].value if values else None


def missing_subject_fields(cert, subject):
    """Requested subject fields the certificate does not carry (pki sign keeps only CN and SANs)."""
    missing = []
    for field, short in SUBJECT_FIELDS:
        wanted = (subject or {}).get(field)
        if wanted and subject_value(cert, short) != str(wanted):
            missing.append("%s=%s" % (short, wanted))
    return missing


class Decision:
    def __init__(self, needed, reason, current=None):
        self.needed = needed
        self.reason = reason
        self.current = current


def needs_renewal(cert_pem, key_pem, request, now=None, renew_before=None, force=False):
    """Decide whether a new certificate is needed, and say why.

    request: common_name, alt_names, ip_sans, key_type, key_bits. renew_before: seconds, or None for one third
    of the certificate's lifetime (8 h of retries for a 25 h certificate).
    """
    now = now or datetime.datetime.now(UTC)
    if not cert_pem:
        return Decision(True, "no certificate at cert_path yet")
    try:
        cert = load_certificate(cert_pem)
    except ValueError:
        return Decision(True, "the file at cert_path is not a readable PEM certificate")
    current = describe(cert, now)
    if force:
        return Decision(True, "force is set", current)
    if not key_pem:
        return Decision(True, "no private key at key_path", current)
    try:
        key = load_private_key(key_pem)
    except (ValueError, TypeError):
        return Decision(True, "the file at key_path is not a readable unencrypted private key", current)
    if not key_matches(cert, key):
        return Decision(True, "the private key does not match the certificate", current)
    if subject_value(cert, "CN") != request["common_name"]:
        return Decision(True, "the common name changed from %s to %s"
                        % (subject_value(cert, "CN"), request["common_name"]), current)
    missing = sorted(set(_dns_names(request["common_name"], request.get("alt_names"))) - set(current["dns_names"]))
    missing += sorted(set(str(ipaddress.ip_address(i)) for i in request.get("ip_sans") or [])
                      - set(current["ip_addresses"]))
    if missing:
        return Decision(True, "the certificate lacks the names %s" % ", ".join(missing), current)
    wanted_bits = 0 if request["key_type"] == "ed25519" else request["key_bits"]
    if (current["key_type"], current["key_bits"]) != (request["key_type"], wanted_bits):
        return Decision(True, "the key is %s %s, not the requested %s %s"
                        % (current["key_type"], current["key_bits"], request["key_type"], wanted_bits), current)
    not_before = _utc(cert, "not_valid_before")
    if not_before > now + datetime.timedelta(minutes=5):
        return Decision(True, "the certificate is not valid yet (clock skew?)", current)
    remaining = current["seconds_remaining"]
    if remaining <= 0:
        return Decision(True, "the certificate has expired", current)
    threshold = renew_before if renew_before is not None else current["lifetime_seconds"] // 3
    if remaining <= threshold:
        return Decision(True, "the certificate expires in %ds, within renew_before (%ds)" % (remaining, threshold),
                        current)
    return Decision(False, "the certificate is valid for %ds more (renews %ds before it expires)"
                    % (remaining, threshold), current)
