# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A Vault that answers badly (fake, HTTPS with its own CA): each bad answer is one sentence, nothing changes on disk.

The host first gets a good certificate from the fake Vault (the pinned trust anchor is the fake PKI's
root), then asks again (force) while the fake gives one bad answer that the core must refuse: expired, not yet valid,
another CN, a SAN or IP not asked for, far too long, junk PEM, non-ASCII chain, a chain to a forged root
of the same name, a server's usage for a client, a leaf that is a CA, a CA whose pathLen 0 forbids the CA below
it, an answer far above the size cap. The old files stay, byte for byte; no staging debris.
"""

from __future__ import absolute_import, division, print_function

import datetime
import os

import pytest

from labs.hosts import leftovers, tree_digest
from cryptography.x509.oid import ExtendedKeyUsageOID

from labs.fake_vault import HOUR, pem
from ansible_collections.minibus.pki.plugins.module_utils import issuance
from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError
from ansible_collections.minibus.pki.plugins.module_utils.options import AUTH_SPEC, CONNECTION_SPEC

UTC = datetime.timezone.utc


@pytest.fixture
def params(fake, tmp_path):
    anchor = tmp_path / "root.pem"
    anchor.write_text(pem(fake.pki.root))
    p = {}
    for spec in (CONNECTION_SPEC, AUTH_SPEC, issuance.CERTIFICATE_SPEC):
        for name, option in spec.items():
            p[name] = option.get("default")
    tls = tmp_path / "tls"
    p.update(url=fake.url, ca_cert=fake.ca_path, token="hvs.fake-token", retries=0, timeout=10,
             common_name="host1.minibus.test", alt_names=["alias.minibus.test"],
             cert_path=str(tls / "cert.pem"), key_path=str(tls / "key.pem"), chain_path=str(tls / "chain.pem"),
             ca_path=str(tls / "ca.pem"), fullchain_path=str(tls / "fullchain.pem"), trust_anchor_path=str(anchor),
             extended_key_usage=["clientAuth"])
    return p


def _good(fake):
    return lambda csr: fake.pki.answer(fake.pki.sign(csr))


def test_a_good_answer_is_installed_with_the_pinned_anchor(fake, params):
    fake.answer = _good(fake)
    result = issuance.ensure_certificate(params)
    assert result["issued"] and result["warnings"] == []
    with open(params["ca_path"]) as handle:
        assert handle.read() == pem(fake.pki.root)  # from trust_anchor_path, not the answer's issuing CA
    with open(params["fullchain_path"]) as handle:
        assert handle.read() == open(params["cert_path"]).read() + pem(fake.pki.intermediate)


def _chunked_forever(wfile):
    try:
        chunk = b"x" * 65536
        for _chunk_number in range(48):  # 3 MiB, chunked: no Content-Length to go by
            wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        wfile.write(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError, OSError):
        pass


def _declared_huge(wfile):
    try:
        wfile.write(b"{" + b" " * 1024)
    except (BrokenPipeError, ConnectionResetError, OSError):
        pass


BAD = {
    "expired": (lambda f: lambda csr: f.pki.answer(f.pki.sign(csr, not_before=datetime.datetime.now(UTC) - 30 * HOUR)),
                "expired at"),
    "not yet valid": (lambda f: lambda csr: f.pki.answer(
        f.pki.sign(csr, not_before=datetime.datetime.now(UTC) + 2 * HOUR)), "not valid before"),
    "other CN": (lambda f: lambda csr: f.pki.answer(f.pki.sign(csr, cn="logserver.minibus.test")),
                 "is for CN logserver.minibus.test"),
    "SAN not asked for": (lambda f: lambda csr: f.pki.answer(
        f.pki.sign(csr, dns=["host1.minibus.test", "alias.minibus.test", "localhost"])), "names not asked for"),
    "IP not asked for": (lambda f: lambda csr: f.pki.answer(f.pki.sign(csr, ips=["8.8.8.8"])),
                         "names not asked for (8.8.8.8)"),
    "far too long": (lambda f: lambda csr: f.pki.answer(f.pki.sign(csr, lifetime=240 * HOUR)), "far longer"),
    "junk PEM": (lambda f: lambda csr: f.pki.answer("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
                 "not a readable certificate"),
    "non-ASCII chain": (lambda f: lambda csr: f.pki.answer(
        f.pki.sign(csr), chain=[pem(f.pki.intermediate).replace("-----END", "\u00e9-----END")]), "not ASCII"),
    "forged root of the same name": (lambda f: lambda csr: f.pki.answer(
        f.pki.sign(csr, forged=True), issuing=f.pki.forged_int, chain=[pem(f.pki.forged_int)]),
        "does not form a valid path to the pinned trust anchor"),
    "server usage for a client": (lambda f: lambda csr: f.pki.answer(
        f.pki.sign(csr, usages=[ExtendedKeyUsageOID.SERVER_AUTH])), "lacks the extended key usage clientAuth"),
    "leaf that is a CA": (lambda f: lambda csr: f.pki.answer(f.pki.sign(csr, ca=True)),
                          "does not form a valid path to the pinned trust anchor"),
    "pathLen 0 above another CA": (lambda f: lambda csr: f.pki.answer(
        f.pki.sign(csr, issuer=f.pki.below_path_len_zero), issuing=f.pki.below_path_len_zero[0],
        chain=[pem(f.pki.below_path_len_zero[0]), pem(f.pki.path_len_zero[0]), pem(f.pki.root)]),
        "path length constraint"),
    "declared 150 MB": (lambda f: lambda csr: (200, {"Content-Length": str(150 * 1024 * 1024)}, _declared_huge),
                        "more than 1024 KiB"),
    "3 MiB chunked": (lambda f: lambda csr: (200, {"Transfer-Encoding": "chunked"}, _chunked_forever),
                      "more than 1024 KiB"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_bad_answer_is_one_sentence_and_changes_nothing(fake, params, case):
    fake.answer = _good(fake)
    issuance.ensure_certificate(params)
    host = os.path.dirname(params["cert_path"])
    before = tree_digest(host)
    make, needle = BAD[case]
    fake.answer = make(fake)
    with pytest.raises(MinibusError) as info:
        issuance.ensure_certificate(dict(params, force=True))
    message = info.value.message
    assert needle in message and "\n" not in message and "unexpected" not in message, message
    assert "hvs.fake-token" not in message
    assert tree_digest(host) == before
    assert leftovers(host) == []


def test_without_a_trust_anchor_a_warning_says_the_chain_is_not_pinned(fake, params):
    fake.answer = _good(fake)
    result = issuance.ensure_certificate(dict(params, trust_anchor_path=None))
    assert result["issued"]
    assert any("chain is not pinned" in w for w in result["warnings"])


def test_http_is_refused_before_any_request(fake, params):
    count = len(fake.requests)
    with pytest.raises(MinibusError) as info:
        issuance.ensure_certificate(dict(params, url=fake.url.replace("https://", "http://")))
    assert "plain http" in info.value.message and len(fake.requests) == count


def test_validate_certs_false_warns(fake, params):
    fake.answer = _good(fake)
    result = issuance.ensure_certificate(dict(params, validate_certs=False, ca_cert=None))
    assert result["issued"] and any("validate_certs is false" in w for w in result["warnings"])
