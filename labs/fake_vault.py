# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A fake Vault over HTTPS (its own CA) that signs CSRs badly on purpose, for the reliability tests (fixture ``fake``).

Only ``POST /v1/<mount>/sign/<role>`` is served (the tests authenticate with a token, which is not
revoked). The answer is built by the function set in ``FakeVault.answer``: it gets the CSR and the
fake PKI and returns (status, headers, body bytes). ``FakeVault.route``, when set, answers every
request first: it gets (method, path, headers, body bytes) and returns (status, headers, body) or None
to fall through; a body that is callable gets the raw socket file and writes what it likes.
"""

from __future__ import absolute_import, division, print_function

import datetime
import ipaddress
import json
import os
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

UTC = datetime.timezone.utc
HOUR = datetime.timedelta(hours=1)


def pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


_USAGE = dict(digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
              key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False)


def _key_ids(builder, public_key, issuer_key):
    # As Vault's PKI makes them: RFC 5280 path validation (x509.verification) requires the key identifiers.
    return (builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                           critical=False))


def make_ca(cn, issuer=None, issuer_key=None, path_length=None):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer.subject if issuer else _name(cn))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - 24 * HOUR).not_valid_after(now + 240 * HOUR)
               .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
               .add_extension(x509.KeyUsage(**_USAGE), critical=True))
    return _key_ids(builder, key.public_key(), issuer_key or key).sign(issuer_key or key, hashes.SHA256()), key


class Pki(object):
    """Root -> intermediate; plus a forged root and intermediate with the same names, and a pathLen 0 CA."""

    def __init__(self):
        self.root, self.root_key = make_ca("Fake Root")
        self.intermediate, self.int_key = make_ca("Fake Intermediate", self.root, self.root_key)
        forged_root, forged_root_key = make_ca("Fake Root")
        self.forged_int, self.forged_int_key = make_ca("Fake Intermediate", forged_root, forged_root_key)
        # (certificate, key): a CA with pathLen 0 under the root, and a CA below it that pathLen 0 forbids.
        self.path_len_zero = make_ca("Fake Path Length Zero", self.root, self.root_key, path_length=0)
        self.below_path_len_zero = make_ca("Fake Below Zero", *self.path_len_zero)

    def sign(self, csr, cn=None, dns=None, ips=None, not_before=None, lifetime=24 * HOUR, forged=False,
             usages=(ExtendedKeyUsageOID.CLIENT_AUTH,), ca=False, issuer=None):
        """A leaf for the CSR's key: names from the CSR unless given; a client's usage unless given.

        ca=True: the leaf claims to be a CA. issuer: (certificate, key) of another issuing CA."""
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        cn = cn or csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        dns = san.get_values_for_type(x509.DNSName) if dns is None else dns
        ips = [str(i) for i in san.get_values_for_type(x509.IPAddress)] if ips is None else ips
        not_before = not_before or datetime.datetime.now(UTC) - datetime.timedelta(seconds=30)
        issuer, issuer_key = issuer or ((self.forged_int, self.forged_int_key) if forged
                                        else (self.intermediate, self.int_key))
        names = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(issuer.subject)
                   .public_key(csr.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(not_before).not_valid_after(not_before + lifetime)
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(**dict(_USAGE, key_encipherment=True, key_agreement=True,
                                                       key_cert_sign=ca, crl_sign=False)), critical=True)
                   .add_extension(x509.SubjectAlternativeName(names), critical=False)
                   .add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False))
        return _key_ids(builder, csr.public_key(), issuer_key).sign(issuer_key, hashes.SHA256())

    def answer(self, leaf, issuing=None, chain=None):
        issuing = pem(issuing or self.intermediate)
        body = {"data": {"certificate": pem(leaf) if not isinstance(leaf, str) else leaf, "issuing_ca": issuing,
                         "ca_chain": chain if chain is not None else [issuing, pem(self.root)],
                         "serial_number": "00"}, "warnings": None}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode("utf-8")


def server_tls(directory):
    """A CA and a server certificate for 127.0.0.1; returns (ca path, ssl context)."""
    ca, ca_key = make_ca("Fake Vault TLS CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - HOUR).not_valid_after(now + 24 * HOUR)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path, cert_path, key_path = (os.path.join(directory, n) for n in ("tls-ca.pem", "tls.pem", "tls.key"))
    with open(ca_path, "w") as handle:
        handle.write(pem(ca))
    with open(cert_path, "w") as handle:
        handle.write(pem(cert))
    with open(key_path, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return ca_path, context


class FakeVault(object):
    def __init__(self, directory):
        self.pki = Pki()
        self.answer = None  # callable(csr) -> (status, headers, body)
        self.route = None  # callable(method, path, headers, body) -> (status, headers, body) or None
        self.requests = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802
                self.do_POST()

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                fake.requests.append(self.path)
                routed = fake.route(self.command, self.path, dict(self.headers), raw) if fake.route else None
                if routed is not None:
                    status, headers, data = routed
                    if status is None:  # the route wrote the whole answer itself (or nothing)
                        data(self.wfile)
                        self.close_connection = True
                        return
                    self._send(status, headers, data)
                    return
                body = json.loads(raw or b"{}")
                if "/sign/" not in self.path:
                    status, headers, data = 404, {}, b'{"errors": ["no handler for route"]}'
                else:
                    csr = x509.load_pem_x509_csr(body["csr"].encode("ascii"))
                    status, headers, data = fake.answer(csr)
                self._send(status, headers, data)

            def _send(self, status, headers, data):
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers and "Transfer-Encoding" not in headers:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if callable(data):
                    data(self.wfile)
                else:
                    self.wfile.write(data)

        self.ca_path, context = server_tls(directory)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.url = "https://127.0.0.1:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
