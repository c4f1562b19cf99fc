# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""auth_method: one file per method, chosen explicitly or derived as before; checked before any request."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import _authenticator, options, vault
from ansible_collections.minibus.pki.plugins.module_utils.errors import InvalidInput


def test_every_method_file_keeps_the_contract():
    assert sorted(_authenticator.METHODS) == sorted(options.AUTH_SPEC["auth_method"]["choices"])
    for name, method in _authenticator.METHODS.items():
        assert method.NAME == name
        for attribute in ("CREDENTIALS", "given", "validate", "authenticate", "MISSING"):
            assert hasattr(method, attribute), (name, attribute)


@pytest.mark.parametrize("params,expected", [
    ({"token": "t"}, "token"),
    ({"role_id": "r", "secret_id": "s"}, "approle"),
    ({"auth_method": "token", "token": "t", "role_id": "r"}, "token"),
    ({"auth_method": "approle", "role_id": "r", "secret_id": "s"}, "approle"),
])
def test_method_chosen_or_derived(params, expected):
    assert _authenticator.validate(dict(params, auth_mount_point="approle")) == expected


@pytest.mark.parametrize("params,needle", [
    ({"auth_method": "cert"}, "auth_method 'cert' is not supported: use approle or token."),
    ({"auth_method": "token"}, "auth_method token needs token"),
    ({"auth_method": "approle", "role_id": "r"}, "auth_method approle needs role_id with secret_id"),
    ({"auth_method": "token", "token": "t", "secret_id": "s", "role_id": "r"},
     "auth_method is token, but credentials for approle were given too"),
    ({"auth_method": "approle", "token": "t", "secret_id": "s", "role_id": "r"},
     "auth_method is approle, but credentials for token were given too"),
])
def test_method_refusals_are_one_sentence(params, needle):
    with pytest.raises(InvalidInput) as info:
        _authenticator.validate(dict(params, auth_mount_point="approle"))
    assert needle in info.value.message and "\n" not in info.value.message


def test_only_approle_may_take_its_credential_from_the_store_later():
    assert _authenticator.validate({"auth_method": "approle", "role_id": "r"}, required=False) is None
    with pytest.raises(InvalidInput):
        _authenticator.validate({"auth_method": "token"}, required=False)


def test_explicit_method_keeps_the_other_methods_environment_out():
    environ = {"VAULT_TOKEN": "hvs.env", "MINIBUS_CSR_SECRET_ID": "sid-env"}
    approle = options.resolve_env({"auth_method": "approle"}, environ)
    assert approle.get("token") is None
    token = options.resolve_env({"auth_method": "token", "role_id": "r"}, environ)
    assert token.get("secret_id") is None and token["token"] == "hvs.env"


def test_token_method_sends_nothing():
    client = vault.VaultClient("https://127.0.0.1:9", retries=0)
    session = _authenticator.authenticate(client, {"auth_method": "token", "token": "hvs.given"})
    assert session.token == "hvs.given" and not session.owned and client.request_count == 0


class _WrappingVault(object):
    """A stand-in client: answers the wrapping lookup with a creation path and records what was asked."""

    def __init__(self, creation_path):
        self.creation_path = creation_path
        self.paths = []

    def remember_secret(self, *secrets):
        pass

    def request(self, method, path, **kwargs):
        self.paths.append(path)
        if path == "sys/wrapping/lookup":
            return {"data": {"creation_path": self.creation_path}}
        if path == "sys/wrapping/unwrap":
            return {"data": {"secret_id": "s", "secret_id_accessor": "a"}}
        return {"auth": {"client_token": "t", "accessor": "x", "policies": ["minibus-host"]}}


BOOT = dict(role_id="minibus/csr", approle_name="minibus-csr", secret_id_wrapping_token="w.token",
            auth_mount_point="approle", bootstrap_mount_point="minibus-bootstrap")


def test_a_wrapping_token_from_the_renewal_mount_is_refused_before_the_unwrap():
    from ansible_collections.minibus.pki.plugins.module_utils.errors import WrappingTokenRejected
    client = _WrappingVault("auth/approle/role/minibus-csr/secret-id")
    with pytest.raises(WrappingTokenRejected) as info:
        _authenticator.authenticate(client, dict(BOOT))
    assert client.paths == ["sys/wrapping/lookup"]
    assert "substituted" in info.value.message and "auth/minibus-bootstrap/role/minibus-csr/secret-id" in info.value.message


def test_a_bootstrap_token_is_unwrapped_and_logs_in_on_the_bootstrap_mount():
    client = _WrappingVault("auth/minibus-bootstrap/role/minibus-csr/secret-id")
    session = _authenticator.authenticate(client, dict(BOOT))
    assert client.paths == ["sys/wrapping/lookup", "sys/wrapping/unwrap", "auth/minibus-bootstrap/login"]
    assert session.token == "t"
