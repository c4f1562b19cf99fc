# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""issuance.prepare builds one immutable Request; changed copies come from replace()."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import _authenticator, issuance


def _params(tmp_path, **extra):
    params = {"url": "https://127.0.0.1:9", "common_name": "h.example.org", "cert_path": str(tmp_path / "c.pem"),
              "key_path": str(tmp_path / "k.pem"), "token": "s.secret-token", "engine_mount_point": "pki_int",
              "role_name": "minibus-server", "ttl": "24h", "key_type": "ec"}
    params.update(extra)
    return params


def test_prepare_returns_an_immutable_request(tmp_path):
    p = issuance.prepare(_params(tmp_path))
    assert p["ttl_seconds"] == 86400 and p.ttl_seconds == 86400 and p.get("chain_path") is None
    assert p.drop_ids is None and (p.uid, p.gid) == (-1, -1)
    with pytest.raises(TypeError):
        p["ttl_seconds"] = 1  # pylint: disable=unsupported-assignment-operation
    with pytest.raises(AttributeError):
        p.ttl_seconds = 1
    with pytest.raises(AttributeError):
        p.no_such_option  # pylint: disable=pointless-statement
    assert "s.secret-token" not in repr(p)


def test_replace_gives_a_changed_copy(tmp_path):
    p = issuance.prepare(_params(tmp_path))
    child = p.replace(uid=-1, privileges_dropped=True)
    assert child.privileges_dropped is True and p.get("privileges_dropped") is None
    assert dict(child, privileges_dropped=None) == dict(p, privileges_dropped=None)


def test_the_credentials_are_validated_once_per_run(tmp_path, monkeypatch):
    calls = []
    real = _authenticator.validate

    def counting(params, required=True):
        calls.append(required)
        return real(params, required)
    monkeypatch.setattr(_authenticator, "validate", counting)
    result = issuance.ensure_certificate(_params(tmp_path), check_mode=True)
    assert result["changed"] is True  # no certificate yet
    assert calls == [False]


def test_a_request_copies_without_recursion(tmp_path):
    import copy  # pylint: disable=import-outside-toplevel
    p = issuance.prepare(_params(tmp_path))
    assert dict(copy.copy(p)) == dict(p)
