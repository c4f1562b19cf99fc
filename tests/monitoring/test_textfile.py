# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The renderer's textfile against Prometheus' own tools, and the alert rules against the renderer.

promtool (Debian's prometheus package) parses and lints the textfile of every state; every minibus_certs
series an alert rule reads must be one the renderer writes, so a renamed series cannot silence an alert.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import re
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.minibus.pki.plugins.module_utils import health

HERE = os.path.dirname(os.path.abspath(__file__))
RULES = os.path.join(HERE, "..", "..", "roles", "minibus_certs", "files", "prometheus", "minibus_certs_rules.yml")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (apt: prometheus)")

GOOD_PLAN = {"changed": False, "reason": "valid", "serial": "0a:1b", "not_after": "2030-06-02T10:00:00Z",
             "seconds_remaining": 22 * 3600, "subject": "CN=host.example.org",
             "issuer": 'CN=Minibus "Intermediate" \\2026,O=minibus', "authority_key_id": "0a:bc"}
READY = {"secret_id": "s.x", "state": "ready", "expires_at": "2099-06-02T12:00:00Z"}
RECORDS = {
    "ok": (GOOD_PLAN, READY, {"last_success": "2030-06-01T11:00:00Z", "last_attempt": "2030-06-01T11:00:00Z"}),
    "renewal_due": (dict(GOOD_PLAN, changed=True, reason="due"), READY, {}),
    "renewal_failed": (GOOD_PLAN, READY, {"last_result": "failed", "last_message": "sealed"}),
    "no_secret_id": (GOOD_PLAN, None, {}),
    "expired": (dict(GOOD_PLAN, seconds_remaining=0), READY, {}),
    "no_certificate": (dict(GOOD_PLAN, not_after=None, serial=None, issuer=None), READY, {}),
}


def test_every_state_is_exercised():
    assert sorted(RECORDS) == sorted(health.STATES)


@needs_promtool
@pytest.mark.parametrize("state", sorted(RECORDS))
def test_promtool_accepts_the_textfile(state):
    plan, secret, recorded = RECORDS[state]
    record = health.status(plan, secret, recorded)
    assert record["state"] == state
    text = health.prometheus(record, 'host.example.org "odd"\nname')
    run = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, check=False)
    assert run.returncode == 0 and not run.stdout.strip(), run.stdout.decode()


def test_alert_rules_read_only_series_the_renderer_writes():
    with open(RULES) as handle:
        groups = yaml.safe_load(handle)["groups"]
    exprs = [rule["expr"] for group in groups for rule in group["rules"]]
    used = set(name for expr in exprs for name in re.findall(r"\bminibus_certs_[a-z_]+", expr))
    written = set(re.findall(r"^# TYPE (\S+)", health.prometheus(health.status(*RECORDS["ok"]), "h"), re.M))
    assert used and used <= written, "rules read series the renderer does not write: %s" % sorted(used - written)
    states = set(s for expr in exprs for s in re.findall(r'state="([a-z_]+)"', expr))
    assert states <= set(health.STATES)


def test_every_alert_has_summary_description_and_runbook():
    with open(RULES) as handle:
        rules = [rule for group in yaml.safe_load(handle)["groups"] for rule in group["rules"]]
    with open(os.path.join(HERE, "..", "..", "docs", "monitoring.md")) as handle:
        runbook = handle.read()
    for rule in rules:
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}, rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert "### %s" % rule["alert"] in runbook, "docs/monitoring.md has no runbook section for %s" % rule["alert"]
