# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The longest Vault outage a host's configuration survives, for the role's preflight: one source,
plugins/module_utils/outage.py (the renewer's --status prints the same)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.errors import AnsibleFilterError

from ansible_collections.minibus.pki.plugins.module_utils import outage
from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError

# The sentence names the role's variables: that is what a user changes.
_ROLE_NAMES = {"ttl": "minibus_certs_ttl", "renew_before": "minibus_certs_renew_before",
               "on_calendar": "minibus_certs_timer_on_calendar",
               "randomized_delay": "minibus_certs_timer_randomized_delay", "wanted": "minibus_certs_outage_budget"}


def outage_budget(ttl, renew_before=None, on_calendar=None, randomized_delay=None):
    """ttl -> {outage_budget_seconds, renew_before_seconds, timer_gap_seconds, ttl_seconds, text}."""
    try:
        return outage.budget_of(ttl, renew_before, on_calendar, randomized_delay)
    except MinibusError as exc:
        raise AnsibleFilterError(exc.message)


def outage_budget_problem(wanted, ttl, renew_before=None, on_calendar=None, randomized_delay=None):
    """'' when the configuration survives an outage of wanted, else the sentence saying what to change."""
    if wanted in (None, ""):
        return ""
    try:
        return outage.budget_problem(wanted, ttl, renew_before, on_calendar, randomized_delay, _ROLE_NAMES) or ""
    except MinibusError as exc:
        raise AnsibleFilterError(exc.message)


class FilterModule(object):
    def filters(self):
        return {"outage_budget": outage_budget, "outage_budget_problem": outage_budget_problem}
