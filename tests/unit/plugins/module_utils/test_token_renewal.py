# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""When the lookup renews a given (broker) token: periodic, renewable, below half its period."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import vault


@pytest.mark.parametrize("info, due", [
    ({"period": 86400, "ttl": 43199, "renewable": True}, True),
    ({"period": 86400, "ttl": 43200, "renewable": True}, False),
    ({"period": 30, "ttl": 3, "renewable": True}, True),
    ({"period": 30, "ttl": 3, "renewable": False}, False),
    # not periodic: a plain TTL token is left to expire as its creator chose
    ({"period": 0, "ttl": 3, "renewable": True}, False),
    ({"ttl": 3, "renewable": True}, False),
    ({"period": "30", "ttl": "3", "renewable": True}, True),
    ({"period": "soon", "ttl": 3, "renewable": True}, False),
    (None, False),
])
def test_renewal_due(info, due):
    assert vault.renewal_due(info) is due


class _Client(object):
    def __init__(self, info):
        self.info = info
        self.calls = []

    def request(self, method, path, token=None, data=None, what=None, **_kwargs):
        self.calls.append((method, path, token))
        return {"data": self.info} if path == "auth/token/lookup-self" else {"auth": {}}


def test_renews_only_when_due():
    client = _Client({"period": 30, "ttl": 10, "renewable": True})
    assert vault.renew_self_if_due(client, "t") is True
    assert client.calls == [("GET", "auth/token/lookup-self", "t"), ("POST", "auth/token/renew-self", "t")]
    client = _Client({"period": 30, "ttl": 20, "renewable": True})
    assert vault.renew_self_if_due(client, "t") is False
    assert client.calls == [("GET", "auth/token/lookup-self", "t")]
