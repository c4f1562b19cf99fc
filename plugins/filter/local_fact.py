# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The role's decision from the minibus_certs local fact: a thin adapter of fact.fact_plan (module_utils)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.minibus.pki.plugins.module_utils.fact import FACT_MAX_AGE_SECONDS, fact_plan


def local_fact_plan(local_facts, request, account_created=False, max_age=FACT_MAX_AGE_SECONDS):
    """ansible_local (or none) + the request the role is about to make -> use_fact, needs_issuance, reason."""
    return fact_plan(local_facts, request, account_created=bool(account_created), max_age=int(max_age))


class FilterModule(object):
    def filters(self):
        return {"local_fact_plan": local_fact_plan}
