# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The fleet audit's findings (pure logic; the requests are tested against OpenBao in tests/reliability)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import audit
from ansible_collections.minibus.pki.plugins.module_utils.errors import InvalidInput

NOW = 1800000000
DAY = 86400


def _fact(cn, last_success="2027-01-15T08:00:00Z", alt_names=()):
    return {"error": None, "request": {"common_name": cn, "alt_names": list(alt_names)},
            "status": {"last_success": last_success}, "certificate": {"not_after_epoch": NOW + DAY, "seconds_left": DAY}}


def _sid(host, accessor, mount="approle"):
    return {"mount": mount, "approle": "minibus-generate-sign-server-keys", "accessor": accessor, "host": host,
            "metadata": {"host": host} if host else {}, "expiration_time": None}


def _kinds(findings):
    return sorted(f["kind"] for f in findings)


def test_a_clean_fleet_has_no_findings():
    hosts = [{"name": "h1", "fact": _fact("h1.minibus.test")}, {"name": "h2", "fact": _fact("h2.minibus.test")}]
    sids = [_sid("h1", "a1"), _sid("h2.minibus.test", "a2")]
    certs = [{"serial": "01", "names": ["h1.minibus.test"], "not_after": "x"}]
    assert audit.findings_of(hosts, sids, certs, 25 * 3600, NOW) == []


def test_two_live_secret_ids_on_either_mount_and_an_unowned_one_are_found():
    hosts = [{"name": "h1", "fact": _fact("h1.minibus.test")}]
    sids = [_sid("h1", "a1"), _sid("h1.minibus.test", "a2", mount="minibus-bootstrap"), _sid("ghost", "a3"),
            _sid(None, "a4")]
    findings = audit.findings_of(hosts, sids, [], 25 * 3600, NOW)
    assert _kinds(findings) == ["multiple_secret_ids", "unowned_secret_id", "unowned_secret_id"]
    multiple = [f for f in findings if f["kind"] == "multiple_secret_ids"][0]
    assert multiple["host"] == "h1" and multiple["accessors"] == ["approle:a1", "minibus-bootstrap:a2"]
    assert all("\n" not in f["message"] for f in findings)


def test_a_certificate_for_a_name_outside_the_inventory_is_found():
    hosts = [{"name": "h1", "fact": _fact("h1.minibus.test", alt_names=["alias.minibus.test"])}]
    certs = [{"serial": "01", "names": ["alias.minibus.test", "h1.minibus.test"], "not_after": "x"},
             {"serial": "02", "names": ["h1.minibus.test", "h9.minibus.test"], "not_after": "x"}]
    findings = audit.findings_of(hosts, [_sid("h1", "a1")], certs, 25 * 3600, NOW)
    assert _kinds(findings) == ["foreign_certificate"]
    assert findings[0]["serial"] == "02" and findings[0]["names"] == ["h9.minibus.test"]


def test_an_old_renewal_a_missing_fact_and_a_fact_error_are_found():
    old = "2027-01-13T00:00:00Z"  # NOW is 2027-01-15T08:00:00Z
    hosts = [{"name": "old", "fact": _fact("old", last_success=old)}, {"name": "gone", "fact": None},
             {"name": "broken", "fact": {"error": "the store is unreadable"}}]
    sids = [_sid("old", "a1"), _sid("gone", "a2"), _sid("broken", "a3")]
    findings = audit.findings_of(hosts, sids, [], 25 * 3600, NOW)
    assert _kinds(findings) == ["local_fact_error", "no_local_fact", "stale_renewal"]
    assert audit.findings_of(hosts[:1], sids[:1], [], 3 * DAY, NOW) == []


@pytest.mark.parametrize("params, expect", [
    ({"hosts": [{"fact": {}}]}, "needs a name"),
    ({"hosts": "h1"}, "must be a list"),
    ({"hosts": [], "secret_id_mount_points": ["/approle"]}, "not a Vault path segment"),
    ({"hosts": [], "max_renewal_age": "soon"}, "max_renewal_age"),
])
def test_bad_options_are_one_sentence_before_any_request(params, expect):
    with pytest.raises(InvalidInput) as info:
        audit.prepare(params)
    assert expect in info.value.message
