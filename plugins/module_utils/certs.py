# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""Keys, CSRs, certificate parsing and the renewal decision. Works with cryptography 38 (Debian 12) and newer."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress
import re
import traceback

from .errors import CappedTtl, InvalidAnswer, InvalidInput

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError:  # the modules turn this into Ansible's "missing required library" error
    CRYPTOGRAPHY_IMPORT_ERROR = traceback.format_exc()

try:  # RFC 5280 path building and validation: cryptography >= 43 (Debian 13); Debian 12's 38 has none
    from cryptography.x509 import verification as _verification
except ImportError:
    _verification = None

# True: the chain to a pinned anchor is checked by cryptography's x509.verification; False: by the hand
# check below (signatures, basicConstraints, pathLen, keyUsage), as on cryptography 38. Tests set it.
PATH_VALIDATION = hasattr(getattr(_verification, "PolicyBuilder", None), "build_client_verifier")

UTC = datetime.timezone.utc

# key_type -> allowed key_bits (first is the default)
KEY_SIZES = {"ec": (256, 384), "rsa": (2048, 3072, 4096), "ed25519": (0,)}

# The longest certificate lifetime the collection allows (the PKI role's max_ttl, the secret id TTL): 25 h.
# One source for the role and the bootstrap too (filter/test plugins minibus.pki.duration_seconds, ttl_within_cap).
MAX_TTL_SECONDS = 25 * 3600

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


def certificate_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


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
        "authority_key_id": _authority_key_id(cert),
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


def _authority_key_id(cert):
    """The issuing CA's key id (colon hex), None without the extension: a rotated CA keeps its name, not its key."""
    try:
        key_id = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None
    return ":".join("%02x" % byte for byte in bytearray(key_id)) if key_id else None


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


def default_renew_before(lifetime_seconds):
    """renew_before when none is set: one third of the certificate's lifetime, whole seconds."""
    return int(lifetime_seconds) // 3


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
    if not_before > now + datetime.timedelta(seconds=CLOCK_SKEW_SECONDS):
        return Decision(True, "the certificate is not valid yet (clock skew?)", current)
    remaining = current["seconds_remaining"]
    if remaining <= 0:
        return Decision(True, "the certificate has expired", current)
    threshold = renew_before if renew_before is not None else default_renew_before(current["lifetime_seconds"])
    if remaining <= threshold:
        return Decision(True, "the certificate expires in %ds, within renew_before (%ds)" % (remaining, threshold),
                        current)
    return Decision(False, "the certificate is valid for %ds more (renews %ds before it expires)"
                    % (remaining, threshold), current)


# --- checking Vault's answer before anything is written ----------------------------------------

# The side's extended key usage (rsyslog checks the peer's: a log server serverAuth, a client clientAuth).
KEY_USAGES = {"serverAuth": "SERVER_AUTH", "clientAuth": "CLIENT_AUTH"}

# How far a certificate's not_before may lie ahead of this host's clock (Vault back-dates by 30 s).
CLOCK_SKEW_SECONDS = 300
# A lifetime this much longer than the ttl asked is not "about the ttl asked".
_LIFETIME_SLACK_SECONDS = 300
# Vault back-dates not_before by 30 s and rounds; anything shorter than the ttl by more was capped.
CAP_TOLERANCE_SECONDS = 120


def _refuse(reason):
    return InvalidAnswer("Vault's answer was refused: %s; nothing was written." % reason)


def _ascii_pem_list(text, what, refuse=_refuse):
    """Certificates from PEM text, or the one-sentence refusal (junk, non-ASCII, not a certificate)."""
    if not isinstance(text, str):
        raise refuse("the %s is not PEM text" % what)
    try:
        data = text.encode("ascii")
    except UnicodeError:
        raise refuse("the %s is not ASCII PEM text" % what)
    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", data, re.S)
    if not blocks or re.sub(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", b"", data,
                            flags=re.S).strip():
        raise refuse("the %s is not one or more PEM certificates" % what)
    certs = []
    for block in blocks:
        try:
            certs.append(x509.load_pem_x509_certificate(block + b"\n"))
        except ValueError:
            raise refuse("the %s holds a PEM block that is not a readable certificate" % what)
    return certs


def pem_certificates(text, what, refuse):
    """The certificates in PEM text, or refuse(reason) for junk, non-ASCII or anything but certificates."""
    return _ascii_pem_list(text, what, refuse)


def parse_trust_anchors(data, path):
    """The pinned root CA certificate(s) of a trust anchor file's bytes: (certificates, text).

    path only names the file in the sentences; issuance.load_trust_anchors reads it (bounded)."""
    try:
        text = data.decode("ascii")
    except UnicodeError:
        raise InvalidInput("trust_anchor_path %s is not ASCII PEM text: give the root CA certificate(s) in PEM."
                           % path)
    try:
        anchors = _ascii_pem_list(text, "trust anchor")
    except InvalidAnswer:
        raise InvalidInput("trust_anchor_path %s holds no readable PEM certificate: give the root CA "
                           "certificate(s) in PEM." % path)
    return anchors, text


def _der(cert):
    return cert.public_bytes(serialization.Encoding.DER)


def signed_by(child, parent):
    """True when parent's key signed child and the names link (works with cryptography 38)."""
    if child.issuer != parent.subject:
        return False
    public_key = parent.public_key()
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(child.signature, child.tbs_certificate_bytes, padding.PKCS1v15(),
                              child.signature_hash_algorithm)
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(child.signature, child.tbs_certificate_bytes,
                              ec.ECDSA(child.signature_hash_algorithm))
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(child.signature, child.tbs_certificate_bytes)
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    except Exception:  # pylint: disable=broad-except
        # e.g. an RSA-PSS signature (cryptography 38 cannot tell its parameters): not verified.
        return False
    return True


def _is_ca(cert):
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _valid_at(cert, now):
    return (_utc(cert, "not_valid_before") <= now + datetime.timedelta(seconds=CLOCK_SKEW_SECONDS)
            and _utc(cert, "not_valid_after") > now)


def check_issued(answer, key, request, trust_anchors=None, now=None):
    """Every check on one Vault answer, before anything is written. Raises InvalidAnswer (one sentence).

    answer: certificate, issuing_ca, ca_chain (PEM text) as Vault returns them. key: the private key.
    request: common_name, alt_names, ip_sans, ttl, ttl_seconds, extended_key_usage (KEY_USAGES names the
    certificate must carry; empty: not checked). trust_anchors: pinned root CA certificates (then an RFC 5280
    path to one of them), or None (then the certificate must still be signed by the answer's issuing CA).
    Returns (cert, chain) where chain is the verified CA certificates from the issuer upwards.
    """
    now = now or datetime.datetime.now(UTC)
    found = _ascii_pem_list(answer.get("certificate"), "certificate")
    if len(found) != 1:
        raise _refuse("the certificate field holds %d certificates instead of one" % len(found))
    cert = found[0]
    chain = []
    if answer.get("ca_chain"):
        if not isinstance(answer["ca_chain"], list):
            raise _refuse("ca_chain is not a list")
        for entry in answer["ca_chain"]:
            chain.extend(_ascii_pem_list(entry, "CA chain"))
    issuing = _ascii_pem_list(answer["issuing_ca"], "issuing CA") if answer.get("issuing_ca") else []
    if not chain:
        chain = issuing
    if not chain:
        raise _refuse("it holds no issuing CA or CA chain")
    if issuing and _der(issuing[0]) != _der(chain[0]):
        raise _refuse("its issuing CA is not the first certificate of its CA chain")
    if not key_matches(cert, key):
        raise _refuse("the certificate does not match the private key")
    _check_names(cert, request)
    _check_validity(cert, request, now)
    _check_chain(cert, chain, trust_anchors, now, key_usages=request.get("extended_key_usage"))
    return cert, chain


def _check_names(cert, request, refuse=_refuse):
    cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    if cns != [request["common_name"]]:
        got = ", ".join(cns) or "(none)"
        raise refuse("the certificate is for CN %s, not the %s asked for" % (got, request["common_name"]))
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    dns = set(n.lower() for n in san.get_values_for_type(x509.DNSName))
    ips = set(str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    others = len(list(san)) - len(san.get_values_for_type(x509.DNSName)) - len(
        san.get_values_for_type(x509.IPAddress))
    wanted_dns = set(n.lower() for n in _dns_names(request["common_name"], request.get("alt_names")))
    wanted_ips = set(str(ipaddress.ip_address(i)) for i in request.get("ip_sans") or [])
    extra = sorted(dns - wanted_dns) + sorted(ips - wanted_ips)
    if extra or others:
        raise refuse("the certificate carries names not asked for (%s)"
                     % ", ".join(extra + (["%d other names" % others] if others else [])))
    missing = sorted(wanted_dns - dns) + sorted(wanted_ips - ips)
    if missing:
        raise refuse("the certificate lacks the names %s that were asked for" % ", ".join(missing))


def _check_valid_now(cert, now, refuse=_refuse):
    not_before, not_after = _utc(cert, "not_valid_before"), _utc(cert, "not_valid_after")
    if not_before > now + datetime.timedelta(seconds=CLOCK_SKEW_SECONDS):
        raise refuse("the certificate is not valid before %s (check this host's and Vault's clocks)"
                     % not_before.strftime("%Y-%m-%dT%H:%M:%SZ"))
    if not_after <= now:
        raise refuse("the certificate expired at %s" % not_after.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return not_before, not_after


def _check_validity(cert, request, now):
    not_before, not_after = _check_valid_now(cert, now)
    lifetime = int((not_after - not_before).total_seconds())
    ttl_seconds = request["ttl_seconds"]
    if lifetime + CAP_TOLERANCE_SECONDS < ttl_seconds:
        raise CappedTtl("Vault capped the requested ttl of %s to about %.1fh (the PKI role's max_ttl); ask for "
                        "at most that, or raise max_ttl on the role; nothing was written."
                        % (request.get("ttl"), lifetime / 3600.0))
    if lifetime > ttl_seconds + _LIFETIME_SLACK_SECONDS:
        raise _refuse("the certificate lives %.1fh, far longer than the ttl of %s asked for"
                      % (lifetime / 3600.0, request.get("ttl")))


def _check_chain(cert, chain, trust_anchors, now, refuse=_refuse, key_usages=()):
    """The answer's chain in itself (issuer first, CAs, in order), the side's extended key usages and, with
    trust anchors, an RFC 5280 path from the certificate to one of them."""
    if not signed_by(cert, chain[0]):
        raise refuse("the certificate is not signed by the issuing CA in the same answer")
    for ca in chain:
        if not _is_ca(ca):
            raise refuse("its CA chain holds %s, which is not a CA certificate" % ca.subject.rfc4514_string())
        if not _valid_at(ca, now):
            raise refuse("the CA %s in its chain is not valid now" % ca.subject.rfc4514_string())
    for child, parent in zip(chain, chain[1:]):
        if not signed_by(child, parent):
            raise refuse("its CA chain is not in order (%s is not signed by %s)"
                         % (child.subject.rfc4514_string(), parent.subject.rfc4514_string()))
    for key_usage in key_usages or ():
        _check_key_usage(cert, key_usage, refuse)
    if trust_anchors is None:
        return
    if PATH_VALIDATION:
        _verify_path(cert, chain, trust_anchors, now, refuse, key_usages)
    else:
        _hand_checked_path(cert, chain, trust_anchors, now, refuse, key_usages)
    _check_leaf_key_usage(cert, refuse)


# x509.verification names extensions by OID; the sentence names them as RFC 5280 does.
_EXTENSION_NAMES = {"2.5.29.14": "subjectKeyIdentifier", "2.5.29.15": "keyUsage", "2.5.29.17": "subjectAltName",
                    "2.5.29.19": "basicConstraints", "2.5.29.35": "authorityKeyIdentifier",
                    "2.5.29.37": "extKeyUsage", "2.5.29.30": "nameConstraints"}


def _not_a_path(reason):
    return "the certificate does not form a valid path to the pinned trust anchor (trust_anchor_path): %s" % reason


def _verify_path(cert, chain, trust_anchors, now, refuse, key_usages):
    """cryptography's RFC 5280 path building from the certificate through the answer's CAs to an anchor."""
    # The leaf may start up to CLOCK_SKEW_SECONDS ahead of this host's clock, as in _check_valid_now.
    not_before = _utc(cert, "not_valid_before")
    at = max(now, min(not_before, now + datetime.timedelta(seconds=CLOCK_SKEW_SECONDS)))
    builder = _verification.PolicyBuilder().store(_verification.Store(list(trust_anchors))).time(at)
    # Roots stay out of the candidates: a self-signed one is its own issuer, and the anchors are in the store.
    intermediates = [ca for ca in chain if ca.subject != ca.issuer]
    sides = list(key_usages or ()) or [_side_of(cert)]
    for side in sides:
        verifier = (builder.build_server_verifier(_server_name(cert)) if side == "serverAuth"
                    else builder.build_client_verifier())
        try:
            verifier.verify(cert, intermediates)
        except _verification.VerificationError as exc:
            reason = " ".join(str(exc).split())
            if "no interior errors" in reason:  # no candidate issuer at some step: the path ends nowhere
                reason = "no chain through the answer's CAs reaches a pinned root"
            reason = re.sub(r"^validation failed: (candidates exhausted: )?", "", reason)
            reason = re.sub(r"\(encountered processing <Certificate\(subject=<Name\((.*?)\)>, \.\.\.\)>\)", r"(at \1)",
                            reason)
            reason = re.sub(r"\b2\.5\.29\.\d+\b", lambda oid: _EXTENSION_NAMES.get(oid.group(0), oid.group(0)), reason)
            raise refuse(_not_a_path(reason))


def _side_of(cert):
    """Without the side named, the TLS side the certificate's own extended key usage gives (client when both)."""
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "clientAuth"
    if ExtendedKeyUsageOID.SERVER_AUTH in usages and ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        return "serverAuth"
    return "clientAuth"


def _server_name(cert):
    """The name a server verifier checks: the certificate's CN, which _check_names found among its SANs."""
    common_name = subject_value(cert, "CN") or ""
    if _is_ip(common_name):
        return x509.IPAddress(ipaddress.ip_address(common_name))
    return x509.DNSName(common_name)


def _hand_checked_path(cert, chain, trust_anchors, now, refuse, key_usages):
    """Without x509.verification: the path is the chain up to the first CA that is, or is signed by, an anchor;
    every CA on it (the anchor too) must allow what is below it (basicConstraints, pathLen, keyCertSign)."""
    anchors = dict((_der(a), a) for a in trust_anchors if _valid_at(a, now))
    path = None
    for index, element in enumerate([cert] + list(chain)):
        if _der(element) in anchors:
            path = ([cert] + list(chain))[1:index] + [element]
            break
        issuer = next((a for a in anchors.values() if signed_by(element, a)), None)
        if issuer is not None:
            path = ([cert] + list(chain))[1:index + 1] + [issuer]
            break
    if path is None:
        raise refuse(_not_a_path("no chain through the answer's CAs reaches a pinned root"))
    if _is_ca(cert):
        raise refuse(_not_a_path("the certificate itself is a CA (basicConstraints ca=True)"))
    if not key_usages:
        side = _side_of(cert)
        try:
            usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            usages = None
        if usages is not None and getattr(ExtendedKeyUsageOID, KEY_USAGES[side]) not in usages:
            raise refuse(_not_a_path("the certificate's extended key usage allows neither clientAuth nor serverAuth"))
    below = 0  # CAs between this one and the certificate that are not self-issued (RFC 5280 4.2.1.9)
    for ca in path:
        name = ca.subject.rfc4514_string()
        try:
            constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise refuse(_not_a_path("%s has no basicConstraints ca=True" % name))
        if constraints.path_length is not None and below > constraints.path_length:
            raise refuse(_not_a_path("path length constraint of %s (%d) exceeded by %d CAs below it"
                                     % (name, constraints.path_length, below)))
        try:
            usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            usage = None
        if usage is not None and not usage.key_cert_sign:
            raise refuse(_not_a_path("the key usage of %s does not allow keyCertSign" % name))
        if ca.subject != ca.issuer:
            below += 1


def _check_leaf_key_usage(cert, refuse):
    """A TLS certificate's key signs the handshake: its keyUsage, when present, must allow digitalSignature."""
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not usage.digital_signature:
        raise refuse(_not_a_path("the certificate's key usage does not allow digitalSignature"))


# --- checking the renewal account's files before root publishes them (publish.py) -------------

def check_installed(cert_pem, key_pem, chain_pem, request, trust_anchors, key_usage, refuse, now=None):
    """The checks of check_issued on files already installed (no lifetime rule: the ttl asked then is not
    known), with the side's extended key usage key_usage. refuse(reason) makes the exception to raise.

    request: common_name, alt_names, ip_sans. chain_pem: the CA certificates from the issuer upwards.
    Returns (cert, key, chain) parsed.
    """
    now = now or datetime.datetime.now(UTC)
    found = _ascii_pem_list(cert_pem, "certificate", refuse)
    if len(found) != 1:
        raise refuse("the certificate file holds %d certificates instead of one" % len(found))
    cert = found[0]
    chain = _ascii_pem_list(chain_pem, "CA chain", refuse)
    if not isinstance(key_pem, str) or "PRIVATE KEY-----" not in key_pem:
        raise refuse("the key file is not a PEM private key")
    try:
        key = load_private_key(key_pem)
    except Exception:  # pylint: disable=broad-except
        # junk, encrypted or unsupported: the reason would only repeat the file's content
        raise refuse("the key file is not a readable unencrypted private key")
    if not key_matches(cert, key):
        raise refuse("the key does not match the certificate")
    _check_names(cert, request, refuse)
    _check_valid_now(cert, now, refuse)
    if trust_anchors is None:
        raise refuse("no trust anchor is pinned (trust_anchor_path)")
    _check_chain(cert, chain, trust_anchors, now, refuse, [key_usage])
    return cert, key, chain


def _check_key_usage(cert, key_usage, refuse):
    if key_usage not in KEY_USAGES:
        raise InvalidInput("extended key usage %r is unknown: use serverAuth or clientAuth." % (key_usage,))
    wanted = getattr(ExtendedKeyUsageOID, KEY_USAGES[key_usage])
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise refuse("the certificate carries no extended key usage (%s is needed)" % key_usage)
    if wanted not in usages:
        raise refuse("the certificate lacks the extended key usage %s this side needs" % key_usage)
