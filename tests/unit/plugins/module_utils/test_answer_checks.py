# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""certs.check_issued: every bad answer a Vault could give is refused with one sentence."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from ansible_collections.minibus.pki.plugins.module_utils import certs, issuance
from ansible_collections.minibus.pki.plugins.module_utils.errors import CappedTtl, InvalidAnswer, InvalidInput

from pki_test_helpers import make_ca, make_leaf

UTC = datetime.timezone.utc
NOW = datetime.datetime.now(UTC).replace(microsecond=0)
HOUR = datetime.timedelta(hours=1)
JUNK = "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _ca(name, key, issuer=None, issuer_key=None, not_before=None, not_after=None, **kw):
    return make_ca(name, key, issuer, issuer_key, not_before, not_after, now=NOW, **kw)


def _leaf(key, issuer, issuer_key, cn="host1.example.org", dns=None, ips=None, not_before=None, lifetime=None,
          usages=None, ca=False, digital_signature=True):
    return make_leaf(key, issuer, issuer_key, cn, dns, ips, not_before, lifetime, usages, ca, now=NOW,
                     digital_signature=digital_signature)


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


# --- the path to the pinned anchor: RFC 5280 rules, by x509.verification and by the hand check -------------

@pytest.fixture(params=["x509.verification", "hand check"])
def path_check(request, monkeypatch):
    """Each path case runs through both code paths: cryptography's x509.verification where this cryptography has
    it (43 and newer), and the hand check that hosts with cryptography 38 (Debian 12) use."""
    if request.param == "x509.verification" and not certs.PATH_VALIDATION:
        pytest.skip("this cryptography has no x509.verification client verifier")
    monkeypatch.setattr(certs, "PATH_VALIDATION", request.param == "x509.verification")
    return request.param


CLIENT, SERVER = [ExtendedKeyUsageOID.CLIENT_AUTH], [ExtendedKeyUsageOID.SERVER_AUTH]


def _path_case(pki, name):
    """(answer, request, what the sentence says) for each answer whose path to the pinned root is not valid."""
    root, root_key, host_key = pki["root"], pki["root_key"], pki["host_key"]
    i, ik = pki["intermediate"], pki["int_key"]
    ca_key, sub_key = certs.generate_private_key("ec", 256), certs.generate_private_key("ec", 256)

    def under(issuer, issuer_key, *above, **leaf):
        return _answer(pki, _leaf(host_key, issuer, issuer_key, **leaf), issuing_ca=_pem(issuer),
                       ca_chain=[_pem(c) for c in (issuer,) + above])

    no_constraints = _ca("No Constraints", ca_key, root, root_key, basic_constraints=False)
    path_len_zero = _ca("Path Length Zero", ca_key, root, root_key, path_length=0)
    below_zero = _ca("Below Zero", sub_key, path_len_zero, ca_key)
    no_cert_sign = _ca("No Cert Sign", ca_key, root, root_key, key_cert_sign=False)
    path = "does not form a valid path to the pinned trust anchor"
    cases = {
        "CA without basicConstraints": (under(no_constraints, ca_key, root, usages=CLIENT), _request(),
                                        "which is not a CA certificate"),
        "pathLen 0 above another CA": (under(below_zero, sub_key, path_len_zero, root, usages=CLIENT), _request(),
                                       path),
        "CA without keyCertSign": (under(no_cert_sign, ca_key, root, usages=CLIENT), _request(), path),
        "leaf that is a CA": (under(i, ik, root, usages=CLIENT, ca=True), _request(), path),
        "clientAuth leaf asked as serverAuth": (under(i, ik, root, usages=CLIENT),
                                                _request(extended_key_usage=["serverAuth"]),
                                                "lacks the extended key usage serverAuth"),
        "serverAuth leaf asked as clientAuth": (under(i, ik, root, usages=SERVER),
                                                _request(extended_key_usage=["clientAuth"]),
                                                "lacks the extended key usage clientAuth"),
        "leaf without usage asked as clientAuth": (under(i, ik, root), _request(extended_key_usage=["clientAuth"]),
                                                   "carries no extended key usage"),
        "leaf for neither TLS side": (under(i, ik, root, usages=[ExtendedKeyUsageOID.CODE_SIGNING]), _request(), path),
        "leaf key not for signatures": (under(i, ik, root, usages=CLIENT, digital_signature=False), _request(), path),
    }
    return cases[name]


@pytest.mark.parametrize("name", [
    "CA without basicConstraints", "pathLen 0 above another CA", "CA without keyCertSign", "leaf that is a CA",
    "clientAuth leaf asked as serverAuth", "serverAuth leaf asked as clientAuth",
    "leaf without usage asked as clientAuth", "leaf for neither TLS side", "leaf key not for signatures",
])
def test_each_answer_without_a_valid_path_is_one_sentence(pki, path_check, name):
    answer, request, needle = _path_case(pki, name)
    with pytest.raises(InvalidAnswer) as info:
        certs.check_issued(answer, pki["host_key"], request, [pki["root"]])
    message = info.value.message
    assert message.startswith("Vault's answer was refused: ") and message.endswith("nothing was written.")
    assert needle in message and "\n" not in message and "BEGIN" not in message, message


@pytest.mark.parametrize("usages, asked", [(CLIENT, ["clientAuth"]), (SERVER, ["serverAuth"]), (CLIENT, []),
                                           (SERVER, []), (None, []), (CLIENT + SERVER, ["clientAuth", "serverAuth"])])
def test_a_good_path_passes_both_checks(pki, path_check, usages, asked):
    """root -> intermediate -> leaf, with the root in the chain or not, for either side."""
    leaf = _leaf(pki["host_key"], pki["intermediate"], pki["int_key"], usages=usages)
    for chain in ([_pem(pki["intermediate"]), _pem(pki["root"])], [_pem(pki["intermediate"])]):
        cert, _chain = certs.check_issued(_answer(pki, leaf, ca_chain=chain), pki["host_key"],
                                          _request(extended_key_usage=asked), [pki["root"]])
        assert cert.subject.rfc4514_string() == "CN=host1.example.org"


def test_a_path_within_its_length_constraints_passes(pki, path_check):
    """pathLen 1 above one more CA, pathLen 0 right above the leaf: allowed."""
    key1, key2 = certs.generate_private_key("ec", 256), certs.generate_private_key("ec", 256)
    upper = _ca("Upper", key1, pki["root"], pki["root_key"], path_length=1)
    lower = _ca("Lower", key2, upper, key1, path_length=0)
    leaf = _leaf(pki["host_key"], lower, key2, usages=CLIENT)
    answer = _answer(pki, leaf, issuing_ca=_pem(lower), ca_chain=[_pem(lower), _pem(upper), _pem(pki["root"])])
    certs.check_issued(answer, pki["host_key"], _request(extended_key_usage=["clientAuth"]), [pki["root"]])


def test_the_forged_root_is_refused_by_both_checks(pki, path_check):
    test_a_chain_to_a_forged_root_of_the_same_name_is_refused(pki)


@pytest.mark.parametrize("with_root", [True, False])
def test_an_unrelated_anchor_says_no_chain_reaches_it(pki, path_check, with_root):
    """The answer's chain (with its own root or without) leads to another root than the pinned one."""
    chain = [_pem(pki["intermediate"])] + ([_pem(pki["root"])] if with_root else [])
    unrelated = _ca("Unrelated Root", certs.generate_private_key("ec", 256))
    with pytest.raises(InvalidAnswer) as info:
        certs.check_issued(_answer(pki, ca_chain=chain), pki["host_key"], _request(), [unrelated])
    assert "no chain through the answer's CAs reaches a pinned root" in info.value.message, info.value.message


def test_unpinned_answers_keep_the_consistency_checks_only(pki, path_check):
    """Without trust anchors the answer's own chain is enough: a pathLen 0 CA above another is not looked at."""
    answer, request, _needle = _path_case(pki, "pathLen 0 above another CA")
    certs.check_issued(answer, pki["host_key"], request, None)
    answer, request, _needle = _path_case(pki, "clientAuth leaf asked as serverAuth")  # the side is still checked
    with pytest.raises(InvalidAnswer, match="serverAuth"):
        certs.check_issued(answer, pki["host_key"], request, None)


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
    assert "does not form a valid path to the pinned trust anchor" in info.value.message, info.value.message


def test_names_compare_case_insensitively_and_ips_normalised(pki):
    leaf = _leaf(pki["host_key"], pki["intermediate"], pki["int_key"], dns=["HOST1.example.org"], ips=["::1"])
    certs.check_issued(_answer(pki, leaf), pki["host_key"], _request(ip_sans=["0:0::1"]), [pki["root"]])


def test_trust_anchor_file(tmp_path, pki):
    good = tmp_path / "root.pem"
    good.write_text(_pem(pki["root"]))
    anchors, text = issuance.load_trust_anchors(str(good))
    assert len(anchors) == 1 and text == _pem(pki["root"])
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    cases = ((str(junk), "holds no readable PEM certificate"),
             (str(tmp_path / "missing.pem"), "Could not read trust_anchor_path"))
    for path, needle in cases:
        with pytest.raises(InvalidInput) as info:
            issuance.load_trust_anchors(path)
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
