# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Filters exposing the core's rules (durations, key sizes, the TTL cap) so the role and the bootstrap
do not parse durations in Jinja: one source, plugins/module_utils/certs.py."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.minibus.pki.plugins.module_utils.certs import KEY_SIZES, MAX_TTL_SECONDS, parse_duration
from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError


def duration_seconds(value, name="duration"):
    """'24h', '90m', '1h30m', '86400s', '86400' or 86400 -> seconds (d = 24 h)."""
    try:
        return parse_duration(value, name)
    except MinibusError as exc:
        raise AnsibleFilterError(exc.message)


def key_sizes(key_type=None):
    """key_type -> allowed key_bits (0 = the type's default), or the whole table for none."""
    table = dict((t, [0] + [s for s in sizes if s]) for t, sizes in KEY_SIZES.items())
    if key_type in (None, ""):
        return table
    if key_type not in table:
        raise AnsibleFilterError("key_type %r is not supported: use %s." % (key_type, ", ".join(sorted(table))))
    return table[key_type]


def ttl_cap_seconds(_value=None):
    """The 25 h cap in seconds (the input is ignored: use it as '{{ none | minibus.pki.ttl_cap_seconds }}')."""
    return MAX_TTL_SECONDS


class FilterModule(object):
    def filters(self):
        return {"duration_seconds": duration_seconds, "key_sizes": key_sizes, "ttl_cap_seconds": ttl_cap_seconds}
