# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures shared by the module_utils unit tests (helpers live in pki_test_helpers)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from pki_test_helpers import new_key


@pytest.fixture(scope="session")
def ec_key():
    return new_key("ec", 256)


@pytest.fixture
def request_for():
    def build(**kwargs):
        request = {"common_name": "host.example.org", "alt_names": [], "ip_sans": [], "key_type": "ec",
                   "key_bits": 256}
        request.update(kwargs)
        return request
    return build
