# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""certs.check_issued: every bad answer a Vault could give is refused with one sentence."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import ipaddress

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.minibus.pki.plugins.module_utils import certs
from ansible_collections.minibus.pki.plugins.module_utils.errors import CappedTtl, InvalidAnswer, InvalidInput

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC).replace(microsecond=0)
HOUR = datetime.timedelta(hours=1)
JUNK = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _ca(name, key, issuer=None, issuer_key=None, not_before=None, not_after=None):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(issuer.subject if issuer else subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - 24 * HOUR).not_valid_after(not_after or NOW + 240 * HOUR)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True))
    return builder.sign(issuer_key or key, hashes.SHA256())


def _leaf(key, issuer, issuer_key, cn="host1.example.org", dns=None, ips=None, not_before=None, lifetime=None,
          usages=None):
    not_before = not_before or NOW - datetime.timedelta(seconds=30)
    dns = [cn] if dns is None else dns
    sans = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips or []]
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
               .issuer_name(issuer.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before).not_valid_after(not_before + (lifetime or 24 * HOUR)))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki():
    root_key = certs.generate_private_key("ec", 256)
    root = _ca("Root", root_key)
    int_key = certs.generate_private_key("ec", 256)
    intermediate = _ca("Intermediate", int_key, root, root_key)
    other_root_key = certs.generate_private_key("ec", 256)
    other_root = _ca("Root", other_root_key)  # same name, other key: a forged root
    host_key = certs.generate_private_key("ec", 256)
    return dict(root=root, root_key=root_key, intermediate=intermediate, int_key=int_key,
                other_root=other_root, other_root_key=other_root_key, host_key=host_key)


def _request(**kw):
    request = {"common_name": "host1.example.org", "alt_names": [], "ip_sans": [], "ttl": "24h",
               "ttl_seconds": 24 * 3600}
    request.update(kw)
    return request


def _answer(pki, leaf=None, **kw):
    leaf = leaf or _leaf(pki["host_key"], pki["intermediate"], pki["int_key"])
    answer = {"certificate": _pem(leaf), "issuing_ca": _pem(pki["intermediate"]),
              "ca_chain": [_pem(pki["intermediate"]), _pem(pki["root"])]}
    answer.update(kw)
    return answer


def test_a_good_answer_passes_pinned_and_unpinned(pki):
    cert, chain = certs.check_issued(_answer(pki), pki["host_key"], _request(), [pki["root"]])
    assert cert.subject.rfc4514_string() == "CN=host1.example.org"
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=Intermediate", "CN=Root"]
    certs.check_issued(_answer(pki, ca_chain=None), pki["host_key"], _request(), None)
    # a chain that stops at the intermediate still reaches the anchor by signature
    certs.check_issued(_answer(pki, ca_chain=[_pem(pki["intermediate"])]), pki["host_key"], _request(),
                       [pki["root"]])


def _bad(pki, name):
    """(answer, key, request) for each bad answer the core must refuse."""
    host_key, other_key = pki["host_key"], certs.generate_private_key("ec", 256)
    i, ik = pki["intermediate"], pki["int_key"]
    self_signed_int = _ca("Intermediate", ik)
    cases = {
        "expired": (_answer(pki, _leaf(host_key, i, ik, not_before=NOW - 30 * HOUR)), host_key, _request()),
        "not yet valid": (_answer(pki, _leaf(host_key, i, ik, not_before=NOW + 2 * HOUR)), host_key, _request()),
        "other CN": (_answer(pki, _leaf(host_key, i, ik, cn="logserver.example.org")), host_key, _request()),
        "extra DNS SAN": (_answer(pki, _leaf(host_key, i, ik, dns=["host1.example.org", "localhost"])), host_key,
                          _request()),
        "extra IP SAN": (_answer(pki, _leaf(host_key, i, ik, ips=["8.8.8.8"])), host_key, _request()),
        "missing SAN": (_answer(pki), host_key, _request(alt_names=["alias.example.org"])),
        "other key": (_answer(pki), other_key, _request()),
        "far too long": (_answer(pki, _leaf(host_key, i, ik, lifetime=240 * HOUR)), host_key, _request()),
        "junk PEM": (_answer(pki, certificate=JUNK), host_key, _request()),
        "not PEM": (_answer(pki, certificate="hello"), host_key, _request()),
        "non-ASCII chain": (_answer(pki, ca_chain=[_pem(i).replace("-----END", "\u00e9-----END")]), host_key,
                            _request()),
        "two certificates": (_answer(pki, certificate=_pem(_leaf(host_key, i, ik)) * 2), host_key, _request()),
        "unsigned by issuer": (_answer(pki, issuing_ca=_pem(self_signed_int), ca_chain=[_pem(self_signed_int)]),
                               host_key, _request()),
        "no CA": (_answer(pki, issuing_ca="", ca_chain=[]), host_key, _request()),
        "issuing CA not first in chain": (_answer(pki, issuing_ca=_pem(pki["root"])), host_key, _request()),
        "leaf posing as CA": (_answer(pki, ca_chain=[_pem(_leaf(host_key, i, ik))]), host_key, _request()),
    }
    return cases[name]


@pytest.mark.parametrize("name", [
    "expired", "not yet valid", "other CN", "extra DNS SAN", "extra IP SAN", "missing SAN", "other key",
    "far too long", "junk PEM", "not PEM", "non-ASCII chain", "two certificates", "unsigned by issuer", "no CA",
    "issuing CA not first in chain", "leaf posing as CA",
])
def test_each_bad_answer_is_one_sentence(pki, name):
    answer, key, request = _bad(pki, name)
    with pytest.raises(InvalidAnswer) as info:
        certs.check_issued(answer, key, request, [pki["root"]])
    message = info.value.message
    assert message.startswith("Vault's answer was refused: ") and message.endswith("nothing was written.")
    assert "\n" not in message and "BEGIN" not in message


def test_capped_ttl_keeps_its_sentence(pki):
    leaf = _leaf(pki["host_key"], pki["intermediate"], pki["int_key"], lifetime=2 * HOUR)
    with pytest.raises(CappedTtl) as info:
        certs.check_issued(_answer(pki, leaf), pki["host_key"], _request(), None)
    assert "capped the requested ttl of 24h to about 2.0h" in info.value.message


def test_a_chain_to_a_forged_root_of_the_same_name_is_refused(pki):
    forged_int_key = certs.generate_private_key("ec", 256)
    forged_int = _ca("Intermediate", forged_int_key, pki["other_root"], pki["other_root_key"])
    leaf = _leaf(pki["host_key"], forged_int, forged_int_key)
    answer = {"certificate": _pem(leaf), "issuing_ca": _pem(forged_int), "ca_chain": [_pem(forged_int)]}
    certs.check_issued(answer, pki["host_key"], _request(), None)  # consistent in itself: passes unpinned ...
    with pytest.raises(InvalidAnswer) as info:  # ... but not against the pinned root
        certs.check_issued(answer, pki["host_key"], _request(), [pki["root"]])
    assert "pinned trust anchor" in info.value.message


def test_names_compare_case_insensitively_and_ips_normalised(pki):
    leaf = _leaf(pki["host_key"], pki["intermediate"], pki["int_key"], dns=["HOST1.example.org"], ips=["::1"])
    certs.check_issued(_answer(pki, leaf), pki["host_key"], _request(ip_sans=["0:0::1"]), [pki["root"]])


def test_trust_anchor_file(tmp_path, pki):
    good = tmp_path / "root.pem"
    good.write_text(_pem(pki["root"]))
    anchors, text = certs.load_trust_anchors(str(good))
    assert len(anchors) == 1 and text == _pem(pki["root"])
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    cases = ((str(junk), "holds no readable PEM certificate"),
             (str(tmp_path / "missing.pem"), "Could not read trust_anchor_path"))
    for path, needle in cases:
        with pytest.raises(InvalidInput) as info:
            certs.load_trust_anchors(path)
        assert needle in info.value.message


# --- certs.check_installed: root's checks before it publishes the account's files -------------------

class _Refused(Exception):
    pass


def _installed(pki, leaf=None, key=None, chain=None, usage="clientAuth", anchors="root", **request):
    leaf = leaf or _leaf(pki["host_key"], pki["intermediate"], pki["int_key"], usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    chain = chain if chain is not None else _pem(pki["intermediate"]) + _pem(pki["root"])
    key = key if key is not None else certs.private_key_pem(pki["host_key"])
    return certs.check_installed(_pem(leaf) if not isinstance(leaf, str) else leaf, key, chain, _request(**request),
                                 [pki[anchors]], usage, _Refused, NOW)


def test_installed_files_pass_without_a_lifetime_rule(pki):
    # a 100 s certificate (the bootstrap's) after a config asking for 24 h: no capped-ttl refusal here
    leaf = _leaf(pki["host_key"], pki["intermediate"], pki["int_key"], lifetime=datetime.timedelta(seconds=100),
                 usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    cert, _key, chain = _installed(pki, leaf=leaf)
    assert cert.subject.rfc4514_string() == "CN=host1.example.org"
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=Intermediate", "CN=Root"]


@pytest.mark.parametrize("case", ["server usage on a client", "no usage", "other anchor", "other key", "junk key",
                                  "expired", "other CN", "no chain", "two certificates"])
def test_installed_files_are_refused(pki, case):
    i, ik, hk = pki["intermediate"], pki["int_key"], pki["host_key"]
    client = [ExtendedKeyUsageOID.CLIENT_AUTH]
    kwargs = {
        "server usage on a client": dict(leaf=_leaf(hk, i, ik, usages=[ExtendedKeyUsageOID.SERVER_AUTH])),
        "no usage": dict(leaf=_leaf(hk, i, ik)),
        "other anchor": dict(anchors="other_root", chain=_pem(i)),
        "other key": dict(key=certs.private_key_pem(certs.generate_private_key("ec", 256))),
        "junk key": dict(key="-----BEGIN PRIVATE KEY-----\njunk\n-----END PRIVATE KEY-----\n"),
        "expired": dict(leaf=_leaf(hk, i, ik, not_before=NOW - 30 * HOUR, usages=client)),
        "other CN": dict(leaf=_leaf(hk, i, ik, cn="logs.example.org", usages=client)),
        "no chain": dict(chain=""),
        "two certificates": dict(leaf=_pem(_leaf(hk, i, ik, usages=client)) * 2),
    }[case]
    with pytest.raises(_Refused) as caught:
        _installed(pki, **kwargs)
    assert "\n" not in str(caught.value)


def test_the_server_side_needs_server_auth(pki):
    leaf = _leaf(pki["host_key"], pki["intermediate"], pki["int_key"], usages=[ExtendedKeyUsageOID.SERVER_AUTH])
    _installed(pki, leaf=leaf, usage="serverAuth")
    with pytest.raises(_Refused, match="serverAuth"):
        _installed(pki, usage="serverAuth")
    with pytest.raises(InvalidInput):
        _installed(pki, usage="codeSigning")
