# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import health

NOW = datetime.datetime(2030, 6, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
GOOD_PLAN = {"changed": False, "reason": "valid", "serial": "0a", "not_after": "2030-06-02T10:00:00Z",
             "seconds_remaining": 22 * 3600, "subject": "CN=host.example.org"}
READY = {"secret_id": "s.secret-value", "state": "ready", "expires_at": "2030-06-02T12:00:00Z"}


def test_record_attempt_counts_and_never_holds_secrets(tmp_path):
    path = str(tmp_path / "state.json")
    health.record_attempt(path, issued=True, serial="0a", now=NOW)
    health.record_attempt(path, error="Vault at https://v is sealed: unseal it, then run again.", now=NOW)
    state = health.read_state(path)
    assert state["renewals_total"] == 1 and state["failures_total"] == 1
    assert state["last_result"] == "failed" and state["last_success"] == "2030-06-01T12:00:00Z"
    assert os.stat(path).st_mode & 0o777 == 0o644


@pytest.mark.parametrize("content", ["{oops", "[1, 2]", '{"renewals_total": "many"}'])
def test_read_state_malformed_is_empty_not_a_crash(tmp_path, content):
    path = tmp_path / "state.json"
    path.write_text(content)
    state = health.read_state(str(path))
    assert state.get("renewals_total", 0) == 0 and state.get("last_result") is None


@pytest.mark.parametrize("plan, secret, state, code, summary", [
    (GOOD_PLAN, READY, {}, health.OK, "certificate valid until 2030-06-02T10:00:00Z (22h00m left)"),
    (dict(GOOD_PLAN, changed=True, reason="expires soon"), READY, {}, health.WARNING, "renewal due: expires soon"),
    (dict(GOOD_PLAN, seconds_remaining=0), READY, {}, health.CRITICAL, "the certificate expired at"),
    (dict(GOOD_PLAN, not_after=None), READY, {}, health.CRITICAL, "no certificate installed"),
    (GOOD_PLAN, None, {}, health.CRITICAL, "no usable secret id: there is no stored secret id"),
    (GOOD_PLAN, dict(READY, state="consumed"), {}, health.CRITICAL, "no usable secret id"),
    (GOOD_PLAN, READY, {"last_result": "failed", "last_message": "sealed"}, health.CRITICAL,
     "the last renewal attempt failed: sealed"),
])
def test_status_codes(plan, secret, state, code, summary):
    record = health.status(plan, secret, state, now=NOW)
    assert record["code"] == code
    assert record["summary"].startswith(summary)
    assert "s.secret-value" not in json.dumps(record)


def test_prometheus_textfile_format():
    record = health.status(GOOD_PLAN, READY, {"last_success": "2030-06-01T11:00:00Z", "renewals_total": 3}, now=NOW)
    text = health.prometheus(record, 'odd"name')
    assert '# TYPE minibus_certs_renewals_total counter' in text
    assert 'minibus_certs_renewals_total{common_name="odd\\"name"} 3' in text
    assert 'minibus_certs_certificate_expiry_timestamp_seconds{common_name="odd\\"name"} 1906624800' in text
    assert 'minibus_certs_last_failure_timestamp_seconds{common_name="odd\\"name"} 0' in text
    for line in text.splitlines():
        assert line.startswith("# ") or line.startswith("minibus_certs_")


def test_nagios_line_has_perfdata():
    record = health.status(GOOD_PLAN, READY, {}, now=NOW)
    assert health.nagios_line(record) == ("MINIBUS CERT OK - certificate valid until 2030-06-02T10:00:00Z (22h00m left)"
                                          " | seconds_left=79200;;;0 renewals=0c failures=0c")
