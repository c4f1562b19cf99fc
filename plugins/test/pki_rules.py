# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Test plugin: a duration within the core's 25 h cap (plugins/module_utils/certs.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.minibus.pki.plugins.module_utils.certs import MAX_TTL_SECONDS, parse_duration
from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError


def ttl_within_cap(value):
    try:
        return parse_duration(value, "ttl") <= MAX_TTL_SECONDS
    except MinibusError as exc:
        raise AnsibleFilterError(exc.message)


class TestModule(object):
    def tests(self):
        return {"ttl_within_cap": ttl_within_cap}
