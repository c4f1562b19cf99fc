# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import options
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
    assert dict((k, v) for k, v in result.items() if v not in (None, "")) == expected


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
        options.validate_auth(dict(dict(auth_mount_point="approle"), **params))
    assert needle in info.value.message and "\n" not in info.value.message


@pytest.mark.parametrize("params,expected", [
    ({"token": "t"}, "token"),
    ({"role_id": "r", "secret_id": "s", "auth_mount_point": "approle"}, "approle"),
    ({"role_id": "r", "secret_id_wrapping_token": "w", "auth_mount_point": "ci/approle", "approle_name": "a"},
     "approle"),
])
def test_validate_auth_accepts(params, expected):
    assert options.validate_auth(params) == expected


def test_validate_auth_not_required():
    assert options.validate_auth({}, required=False) is None
    assert options.validate_auth({"role_id": "r"}, required=False) is None
    with pytest.raises(InvalidInput):  # conflicts are refused even when credentials are optional
        options.validate_auth({"token": "t", "secret_id": "s"}, required=False)


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
