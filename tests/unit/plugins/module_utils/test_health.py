# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import re

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import health
from ansible_collections.minibus.pki.plugins.module_utils.files import CertStore

from pki_test_helpers import key_pem, make_cert, new_key

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


STATUS_CASES = [
    (GOOD_PLAN, READY, {}, health.OK, "ok", "certificate valid until 2030-06-02T10:00:00Z (22h00m left)"),
    (dict(GOOD_PLAN, changed=True, reason="expires soon"), READY, {}, health.WARNING, "renewal_due",
     "renewal due: expires soon"),
    (dict(GOOD_PLAN, seconds_remaining=0), READY, {}, health.CRITICAL, "expired", "the certificate expired at"),
    (dict(GOOD_PLAN, not_after=None), READY, {}, health.CRITICAL, "no_certificate", "no certificate installed"),
    (GOOD_PLAN, None, {}, health.CRITICAL, "no_secret_id", "no usable secret id: there is no stored secret id"),
    (GOOD_PLAN, dict(READY, state="consumed"), {}, health.CRITICAL, "no_secret_id", "no usable secret id"),
    (GOOD_PLAN, READY, {"last_result": "failed", "last_message": "sealed"}, health.CRITICAL, "renewal_failed",
     "the last renewal attempt failed: sealed"),
]


@pytest.mark.parametrize("plan, secret, state, code, name, summary", STATUS_CASES)
def test_status_codes(plan, secret, state, code, name, summary):
    record = health.status(plan, secret, state, now=NOW)
    assert record["code"] == code
    assert record["state"] == name
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


_SAMPLE = re.compile(r'^(minibus_certs_[a-z_]+)\{(.*)\} (-?[0-9]+)$')
_LABEL = re.compile(r'([a-z_]+)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def _samples(text):
    """The textfile as [(name, labels, value)], failing on any line the exposition format would refuse."""
    samples, described = [], set()
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            described.add((line[2:6], line.split()[2]))
            continue
        match = _SAMPLE.match(line)
        assert match, "not a sample line: %r" % line
        name, labels_text, value = match.groups()
        labels, pos = {}, 0
        while pos < len(labels_text):
            label = _LABEL.match(labels_text, pos)
            assert label, "bad labels in %r" % line
            labels[label.group(1)] = re.sub(r'\\(.)', lambda m: {"n": "\n"}.get(m.group(1), m.group(1)),
                                            label.group(2))
            pos = label.end()
        assert ("HELP", name) in described and ("TYPE", name) in described, "%s without HELP/TYPE" % name
        samples.append((name, labels, int(value)))
    return samples


@pytest.mark.parametrize("plan, secret, state, code, name, summary", STATUS_CASES)
def test_prometheus_state_set_has_exactly_the_current_state_at_1(plan, secret, state, code, name, summary):
    text = health.prometheus(health.status(plan, secret, state, now=NOW), "host.example.org")
    states = dict((labels["state"], value) for metric, labels, value in _samples(text)
                  if metric == "minibus_certs_state")
    assert sorted(states) == sorted(health.STATES)
    assert [s for s, value in states.items() if value == 1] == [name]
    assert set(states.values()) == {0, 1}
    assert 'minibus_certs_status{common_name="host.example.org"} %d' % code in text


def test_prometheus_certificate_info_names_issuer_key_id_and_serial():
    plan = dict(GOOD_PLAN, issuer="CN=Minibus Intermediate 2026-11,O=minibus", authority_key_id="0a:bc:de")
    text = health.prometheus(health.status(plan, READY, {}, now=NOW), "host.example.org")
    info = [(labels, value) for metric, labels, value in _samples(text) if metric == "minibus_certs_certificate_info"]
    assert info == [({"common_name": "host.example.org", "issuer": "CN=Minibus Intermediate 2026-11,O=minibus",
                      "authority_key_id": "0a:bc:de", "serial": "0a"}, 1)]


def test_prometheus_no_certificate_has_no_info_sample():
    text = health.prometheus(health.status(dict(GOOD_PLAN, not_after=None, serial=None), READY, {}, now=NOW), "h")
    assert "# TYPE minibus_certs_certificate_info gauge" in text
    assert not [s for s in _samples(text) if s[0] == "minibus_certs_certificate_info"]


def test_prometheus_escapes_label_values():
    odd = 'CN=a\\,b "quoted"\nO=evil} 1\nminibus_certs_state{state="ok"'
    plan = dict(GOOD_PLAN, issuer=odd)
    text = health.prometheus(health.status(plan, READY, {}, now=NOW), 'odd"name\\\n')
    samples = _samples(text)  # every line still parses: the newline cannot start a forged sample
    info = [labels for metric, labels, _value in samples if metric == "minibus_certs_certificate_info"]
    assert info[0]["issuer"] == odd and info[0]["common_name"] == 'odd"name\\\n'
    assert len([s for s in samples if s[0] == "minibus_certs_state" and s[2] == 1]) == 1


def test_prometheus_every_series_has_help_type_and_the_gauges_stay():
    text = health.prometheus(health.status(GOOD_PLAN, READY, {}, now=NOW), "h")
    names = set(metric for metric, _labels, _value in _samples(text))
    assert names == set("minibus_certs_" + n for n in (
        "certificate_expiry_timestamp_seconds", "renewal_due", "last_attempt_timestamp_seconds",
        "last_success_timestamp_seconds", "last_failure_timestamp_seconds", "last_run_success", "secret_id_usable",
        "renewals_total", "failures_total", "status", "state", "certificate_info"))


def test_collect_records_the_installed_certificates_issuer(tmp_path):
    key = new_key("ec")
    cert = make_cert(key, not_before=datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1),
                     authority_key_id=b"\x01\x02\xff")
    params = {"url": "https://vault.invalid:8200", "common_name": "host.example.org", "key_type": "ec",
              "cert_path": str(tmp_path / "tls" / "cert.pem"), "key_path": str(tmp_path / "tls" / "key.pem"),
              "state_path": str(tmp_path / "state.json"), "role_id": "r", "secret_id": "s", "ttl": "24h"}
    CertStore(params["cert_path"], params["key_path"]).install({"cert": cert, "key": key_pem(key)}, "0a")
    record = health.collect(params)
    assert (record["issuer"], record["authority_key_id"]) == ("CN=host.example.org", "01:02:ff")
    assert 'issuer="CN=host.example.org",authority_key_id="01:02:ff"' in health.prometheus(record, "host.example.org")


def test_nagios_line_has_perfdata():
    record = health.status(GOOD_PLAN, READY, {}, now=NOW)
    assert health.nagios_line(record) == ("MINIBUS CERT OK - certificate valid until 2030-06-02T10:00:00Z (22h00m left)"
                                          " | seconds_left=79200;;;0 renewals=0c failures=0c")
