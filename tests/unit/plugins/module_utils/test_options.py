# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import _authenticator, options
from ansible_collections.minibus.pki.plugins.module_utils.errors import InvalidInput


@pytest.mark.parametrize("params,environ,expected", [
    # url: VAULT_ADDR before BAO_ADDR; explicit wins; an empty explicit value falls back
    ({}, {"VAULT_ADDR": "https://v:8200", "BAO_ADDR": "https://b:8200"}, {"url": "https://v:8200"}),
    ({}, {"BAO_ADDR": "https://b:8200"}, {"url": "https://b:8200"}),
    ({}, {"VAULT_ADDR": "", "BAO_ADDR": "https://b:8200"}, {"url": "https://b:8200"}),
    ({"url": "https://x:8200"}, {"VAULT_ADDR": "https://v:8200"}, {"url": "https://x:8200"}),
    ({"url": ""}, {"VAULT_ADDR": "https://v:8200"}, {"url": "https://v:8200"}),
    ({}, {"VAULT_CACERT": "/v.pem", "BAO_CACERT": "/b.pem", "BAO_NAMESPACE": "ns"},
     {"ca_cert": "/v.pem", "namespace": "ns"}),
    # token from the environment
    ({}, {"VAULT_TOKEN": "hvs.env"}, {"token": "hvs.env"}),
    ({}, {"BAO_TOKEN": "s.bao"}, {"token": "s.bao"}),
    ({"token": "hvs.mine"}, {"VAULT_TOKEN": "hvs.env"}, {"token": "hvs.mine"}),
    # MINIBUS_CSR_SECRET_ID only with a role_id
    ({}, {"MINIBUS_CSR_SECRET_ID": "sid-env"}, {}),
    ({"role_id": "minibus/csr"}, {"MINIBUS_CSR_SECRET_ID": "sid-env"},
     {"role_id": "minibus/csr", "secret_id": "sid-env"}),
    # VAULT_TOKEN is not used when an explicit AppRole credential is given
    ({"role_id": "r", "secret_id": "sid-mine"}, {"VAULT_TOKEN": "hvs.env", "MINIBUS_CSR_SECRET_ID": "sid-env"},
     {"role_id": "r", "secret_id": "sid-mine"}),
    ({"role_id": "r", "secret_id_wrapping_token": "hvs.wrap"},
     {"VAULT_TOKEN": "hvs.env", "MINIBUS_CSR_SECRET_ID": "sid-env"},
     {"role_id": "r", "secret_id_wrapping_token": "hvs.wrap"}),
    # ... nor when role_id + MINIBUS_CSR_SECRET_ID make an AppRole login
    ({"role_id": "r"}, {"VAULT_TOKEN": "hvs.env", "MINIBUS_CSR_SECRET_ID": "sid-env"},
     {"role_id": "r", "secret_id": "sid-env"}),
    # an explicit token keeps MINIBUS_CSR_SECRET_ID out
    ({"token": "hvs.mine", "role_id": "r"}, {"MINIBUS_CSR_SECRET_ID": "sid-env"}, {"token": "hvs.mine", "role_id": "r"}),
    # role_id without a secret id in the environment: the token applies
    ({"role_id": "r"}, {"VAULT_TOKEN": "hvs.env"}, {"role_id": "r", "token": "hvs.env"}),
])
def test_resolve_env(params, environ, expected):
    result = options.resolve_env(dict(params), environ)
    assert dict((k, v) for k, v in result.items() if v not in (None, "") and k != options.FROM_ENV) == expected


def test_resolve_env_records_which_variable_gave_an_option():
    result = options.resolve_env({"url": "https://x:8200"}, {"BAO_CACERT": "/b.pem", "VAULT_ADDR": "https://v"})
    assert result[options.FROM_ENV] == {"ca_cert": "BAO_CACERT"}


def test_resolve_env_fills_in_place():
    params = {}
    assert options.resolve_env(params, {"VAULT_ADDR": "https://v"}) is params
    assert params["url"] == "https://v"


def test_env_table_is_ordered_vault_first():
    table = dict(options.ENV_FALLBACKS)
    assert table["url"] == ("VAULT_ADDR", "BAO_ADDR")
    assert table["token"] == ("VAULT_TOKEN", "BAO_TOKEN")


@pytest.mark.parametrize("params,needle", [
    ({"token": "t", "secret_id": "s", "role_id": "r"}, "Both a token"),
    ({"token": "t", "secret_id_wrapping_token": "w", "role_id": "r"}, "Both a token"),
    ({"role_id": "r", "secret_id": "s", "secret_id_wrapping_token": "w"}, "secret_id_wrapping_token"),
    ({"secret_id": "s"}, "role_id"),
    ({"secret_id_wrapping_token": "w"}, "role_id"),
    ({"role_id": "r", "secret_id": "s", "auth_mount_point": "/approle"}, "auth_mount_point"),
    ({"role_id": "r", "secret_id": "s", "auth_mount_point": ""}, "auth_mount_point"),
    ({"role_id": "r", "secret_id_wrapping_token": "w", "approle_name": "a", "bootstrap_mount_point": "/b"},
     "bootstrap_mount_point"),
    ({"role_id": "r", "secret_id_wrapping_token": "w", "approle_name": "a", "bootstrap_mount_point": ""},
     "bootstrap_mount_point"),
    ({}, "No Vault credentials"),
    ({"role_id": "r"}, "No Vault credentials"),
    # a wrapping token is unwrapped only for one named AppRole role
    ({"role_id": "r", "secret_id_wrapping_token": "w"}, "needs approle_name"),
])
def test_validate_auth_rejects(params, needle):
    with pytest.raises(InvalidInput) as info:
        _authenticator.validate(dict(dict(auth_mount_point="approle"), **params))
    assert needle in info.value.message and "\n" not in info.value.message


@pytest.mark.parametrize("params,expected", [
    ({"token": "t"}, "token"),
    ({"role_id": "r", "secret_id": "s", "auth_mount_point": "approle"}, "approle"),
    ({"role_id": "r", "secret_id_wrapping_token": "w", "auth_mount_point": "ci/approle", "approle_name": "a"},
     "approle"),
])
def test_validate_auth_accepts(params, expected):
    assert _authenticator.validate(params) == expected


def test_validate_auth_not_required():
    assert _authenticator.validate({}, required=False) is None
    assert _authenticator.validate({"role_id": "r"}, required=False) is None
    with pytest.raises(InvalidInput):  # conflicts are refused even when credentials are optional
        _authenticator.validate({"token": "t", "secret_id": "s"}, required=False)


@pytest.mark.parametrize("params,needle", [
    ({}, "No Vault address"),
    ({"url": ""}, "No Vault address"),
    ({"url": "ftp://x"}, "not an http(s) URL"),
    ({"url": "http://"}, "not an http(s) URL"),
    ({"url": "https:///"}, "not an http(s) URL"),
    ({"url": "vault:8200"}, "not an http(s) URL"),
    ({"url": "https://v", "timeout": 0}, "timeout"),
    ({"url": "https://v", "retries": -1}, "retries"),
    ({"url": "http://127.0.0.1:8200"}, "plain http"),
    ({"url": "http://127.0.0.1:8200", "allow_insecure_http": False}, "allow_insecure_http"),
    ({"url": "https://v", "timeout": "soon"}, "timeout 'soon' is not a whole number"),
    ({"url": "https://v", "retries": "3x"}, "retries '3x' is not a whole number"),
    ({"url": "https://v", "timeout": True}, "timeout True is not a whole number"),
])
def test_validate_connection_rejects(params, needle):
    with pytest.raises(InvalidInput) as info:
        options.validate_connection(params)
    assert needle in info.value.message


@pytest.mark.parametrize("url", ["https://vault.example.org:8200", "https://127.0.0.1:8200/"])
def test_validate_connection_accepts(url):
    options.validate_connection({"url": url, "timeout": 30, "retries": 0})


def test_insecure_http_only_when_asked_and_then_warned():
    params = {"url": "http://127.0.0.1:8200", "allow_insecure_http": True}
    options.validate_connection(params)
    assert any("in clear" in w for w in options.connection_warnings(params))
    assert options.connection_warnings({"url": "https://v", "validate_certs": True}) == []


def test_validate_certs_false_warns():
    warnings = options.connection_warnings({"url": "https://v", "validate_certs": False})
    assert len(warnings) == 1 and "validate_certs is false" in warnings[0]


def test_timeout_and_retries_given_as_strings_become_numbers():
    params = {"url": "https://v", "timeout": "30", "retries": " 2 "}
    options.validate_connection(params)
    assert params["timeout"] == 30 and params["retries"] == 2


# --- the CA bundle (ca_cert) is checked before any request -----------------------------------

def _ca_pem():
    certs = pytest.importorskip("cryptography.x509")
    import datetime
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    key = ec.generate_private_key(ec.SECP256R1())
    name = certs.Name([certs.NameAttribute(certs.oid.NameOID.COMMON_NAME, "Test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (certs.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(certs.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


CA_CASES = {
    "missing": (None, "does not exist"),
    "empty": (b"", "is empty"),
    "blank": (b"\n  \n", "is empty"),
    "DER or text": (b"just some text\n", "no -----BEGIN CERTIFICATE----- block"),
    "junk PEM": (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "no PEM certificate that parses"),
    "a key only": (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "no -----BEGIN CERTIFICATE-----"),
}


@pytest.mark.parametrize("case", sorted(CA_CASES))
def test_a_bad_ca_bundle_is_one_sentence_naming_the_option_and_file(tmp_path, case):
    content, needle = CA_CASES[case]
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidInput) as info:
        options.validate_connection({"url": "https://v", "ca_cert": str(path)})
    message = info.value.message
    assert message.startswith("ca_cert %s " % path) and needle in message, message
    assert "nothing was sent to Vault" in message and "\n" not in message


def test_a_ca_bundle_from_the_environment_names_the_variable(tmp_path):
    params = options.resolve_env({"url": "https://v"}, {"VAULT_CACERT": str(tmp_path / "nope.pem")})
    with pytest.raises(InvalidInput) as info:
        options.validate_connection(params)
    assert info.value.message.startswith("ca_cert (from VAULT_CACERT) %s does not exist" % (tmp_path / "nope.pem"))


def test_a_directory_and_an_unreadable_bundle_are_refused(tmp_path):
    assert "is a directory" in options.check_ca_bundle(str(tmp_path))
    path = tmp_path / "ca.pem"
    path.write_bytes(_ca_pem())
    path.chmod(0)
    try:
        problem = options.check_ca_bundle(str(path))
        import os
        if os.geteuid() == 0:
            assert problem is None  # root reads it anyway; the issuance checks again as the owner
        else:
            assert "cannot be read by uid" in problem
    finally:
        path.chmod(0o644)


def test_a_good_bundle_passes_and_validate_certs_false_skips_the_check(tmp_path):
    path = tmp_path / "ca.pem"
    path.write_bytes(b"# comment\n" + _ca_pem())
    options.validate_connection({"url": "https://v", "ca_cert": str(path)})
    options.validate_connection({"url": "https://v", "ca_cert": str(tmp_path / "nope"), "validate_certs": False})


@pytest.mark.parametrize("url,expected", [
    ("https://a:8200", ["https://a:8200"]),
    ("https://a:8200/,https://b:8200", ["https://a:8200", "https://b:8200"]),
    (["https://a:8200", " https://b:8200 "], ["https://a:8200", "https://b:8200"]),
])
def test_validate_connection_turns_url_into_the_address_list(url, expected):
    params = {"url": url}
    options.validate_connection(params)
    assert params["url"] == expected


@pytest.mark.parametrize("url,needle", [
    (["https://a:8200", "http://b:8200"], "The Vault address http://b:8200 is plain http"),
    ("https://a:8200,b:8200", "The Vault address 'b:8200' is not an http(s) URL"),
    ([" ", ","], "No Vault address"),
])
def test_every_address_gets_the_same_checks(url, needle):
    with pytest.raises(InvalidInput) as info:
        options.validate_connection({"url": url})
    assert needle in info.value.message


def test_vault_addr_may_list_several_addresses():
    params = options.resolve_env({}, {"VAULT_ADDR": "https://a:8200,https://b:8200"})
    options.validate_connection(params)
    assert params["url"] == ["https://a:8200", "https://b:8200"]
