# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Each module's own argument handling, run in-process (no Vault: every case is refused before a request)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

pytest.importorskip("hvac")
patch_module_args = pytest.importorskip("ansible.module_utils.testing").patch_module_args

from ansible_collections.minibus.pki.plugins.modules import (  # noqa: E402
    vault_approle_login,
    vault_pki_issue,
    vault_unwrap,
)


def _run(module, args, capsys):
    with patch_module_args(args):
        with pytest.raises(SystemExit):
            module.main()
    out = capsys.readouterr().out
    return json.loads(out[out.index("{"):])


@pytest.fixture
def no_vault_env(monkeypatch):
    for name in ("VAULT_ADDR", "BAO_ADDR", "VAULT_TOKEN", "BAO_TOKEN", "VAULT_CACERT", "BAO_CACERT",
                 "MINIBUS_CSR_SECRET_ID", "VAULT_NAMESPACE", "BAO_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)


URL = "https://127.0.0.1:9"


@pytest.mark.parametrize("args,needle", [
    ({"url": URL, "token": "hvs.x"}, "does not take one"),
    ({"url": URL, "role_id": "r", "auth_method": "token"}, "does not take one"),
    ({"url": URL, "role_id": "r", "secret_id_wrapping_token": "w.secret"}, "needs approle_name"),
    ({"url": "http://127.0.0.1:9", "role_id": "r", "secret_id": "s.secret"}, "is plain http"),
    ({"url": URL, "role_id": "r", "secret_id": "s.secret", "timeout": 0}, "timeout must be a positive"),
    ({"role_id": "r", "secret_id": "s.secret"}, "No Vault address"),
])
def test_vault_approle_login_refuses(args, needle, capsys, no_vault_env):
    result = _run(vault_approle_login, args, capsys)
    assert result["failed"] and needle in result["msg"]
    assert "s.secret" not in json.dumps(result) and "w.secret" not in json.dumps(result)


def test_vault_approle_login_check_mode_sends_nothing(capsys, no_vault_env):
    result = _run(vault_approle_login, {"url": URL, "role_id": "r", "secret_id": "s.secret",
                                        "_ansible_check_mode": True}, capsys)
    assert result["changed"] and "token" not in result


@pytest.mark.parametrize("args,needle", [
    ({"url": URL, "wrapping_token": "w"}, "expected_creation_path"),
    ({"url": "http://v:8200", "wrapping_token": "w.secret", "expected_creation_path": "auth/approle/role/x/secret-id"},
     "is plain http"),
])
def test_vault_unwrap_refuses(args, needle, capsys, no_vault_env):
    result = _run(vault_unwrap, args, capsys)
    assert result["failed"] and needle in result["msg"] and "w.secret" not in json.dumps(result)


def _pki_args(tmp_path, **extra):
    args = {"url": URL, "common_name": "host1.example.org", "cert_path": str(tmp_path / "tls" / "cert.pem"),
            "key_path": str(tmp_path / "tls" / "key.pem")}
    args.update(extra)
    return args


@pytest.mark.parametrize("extra,needle", [
    ({"key_type": "ec", "key_bits": 2048}, "key_bits 2048 does not fit key_type ec"),
    ({"ttl": "soon"}, "ttl 'soon' is not a duration"),
    ({"ip_sans": ["not-an-ip"]}, "is not an IP address"),
    ({"secret_id_store": "/x/s.json"}, "secret_id_store needs approle_name"),
    ({"role_id": "r", "secret_id_wrapping_token": "w.secret"}, "needs approle_name"),
    ({"url": "http://v:8200"}, "is plain http"),
    ({"auth_method": "token"}, "auth_method token needs token"),
    ({"owner": "no-such-user-here"}, "does not exist on this host"),
])
def test_vault_pki_issue_refuses_before_any_request(tmp_path, extra, needle, capsys, no_vault_env):
    result = _run(vault_pki_issue, _pki_args(tmp_path, **extra), capsys)
    assert result["failed"] and needle in result["msg"], result
    assert "w.secret" not in json.dumps(result)
    assert not (tmp_path / "tls").exists()


def test_vault_pki_issue_check_mode_plans_without_vault(tmp_path, capsys, no_vault_env):
    result = _run(vault_pki_issue, _pki_args(tmp_path, _ansible_check_mode=True, fullchain_path=str(
        tmp_path / "tls" / "fullchain.pem"), trust_anchor_path=str(tmp_path / "root.pem")), capsys)
    assert result["changed"] and result["vault_requests"] == 0 and "no certificate" in result["reason"]
    assert not (tmp_path / "tls").exists()
