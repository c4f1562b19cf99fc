# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The filter and test plugins give the role and the bootstrap the core's own rules."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.minibus.pki.plugins.filter import pki_rules as filters
from ansible_collections.minibus.pki.plugins.module_utils import certs
from ansible_collections.minibus.pki.plugins.test import pki_rules as tests


@pytest.mark.parametrize("value,seconds", [("24h", 86400), ("90m", 5400), ("1h30m", 5400), ("86400s", 86400),
                                           ("86400", 86400), (86400, 86400), ("1d", 86400), ("25h", 90000)])
def test_duration_seconds_is_the_cores(value, seconds):
    assert filters.duration_seconds(value) == seconds == certs.parse_duration(value)


@pytest.mark.parametrize("value", ["soon", "", "0", True, "-5m"])
def test_duration_seconds_refuses_in_one_sentence(value):
    with pytest.raises(AnsibleFilterError) as info:
        filters.duration_seconds(value, "minibus_certs_ttl")
    assert "minibus_certs_ttl" in str(info.value) and "\n" not in str(info.value)


def test_registered_names():
    assert sorted(filters.FilterModule().filters()) == ["duration_seconds", "key_sizes", "ttl_cap_seconds"]
    assert sorted(tests.TestModule().tests()) == ["ttl_within_cap"]


def test_key_sizes_and_cap_come_from_the_core():
    assert filters.key_sizes("ec") == [0, 256, 384]
    assert filters.key_sizes("ed25519") == [0]
    assert sorted(filters.key_sizes()) == sorted(certs.KEY_SIZES)
    with pytest.raises(AnsibleFilterError):
        filters.key_sizes("dsa")
    assert filters.ttl_cap_seconds() == certs.MAX_TTL_SECONDS == 90000
    assert tests.ttl_within_cap("25h") and not tests.ttl_within_cap("25h1s")
