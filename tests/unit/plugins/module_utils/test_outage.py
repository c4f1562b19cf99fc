# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The outage budget: renew_before - 2 x (timer period + RandomizedDelaySec + AccuracySec)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.minibus.pki.plugins.filter import outage_budget as filters
from ansible_collections.minibus.pki.plugins.module_utils import outage
from ansible_collections.minibus.pki.plugins.module_utils.errors import InvalidInput

H, M = 3600, 60


def test_the_defaults_survive_6h28m():
    info = outage.budget_of("24h")
    assert info["renew_before_seconds"] == 8 * H and info["timer_gap_seconds"] == 46 * M
    assert info["outage_budget_seconds"] == 8 * H - 2 * 46 * M == 6 * H + 28 * M
    assert info["text"] == "survives a Vault outage of up to 6h28m"


@pytest.mark.parametrize("kwargs,budget", [
    # bench/fleet_sim.py's rows (which model no AccuracySec: accuracy=0). A 6h outage at the worst moment:
    # 24h/25h with the 30 min timer expire nothing, the hourly timer lets some certificates expire.
    (dict(ttl=24 * H, period=1800, randomized_delay=900, accuracy=0), 6 * H + 30 * M),
    (dict(ttl=25 * H, period=1800, randomized_delay=900, accuracy=0), 25 * H // 3 - 90 * M),
    (dict(ttl=24 * H, period=3600, randomized_delay=900, accuracy=0), 5 * H + 30 * M),
    # the naive rule (renew_before 1h): hourly, a certificate can expire with Vault up (1h < one 75 min gap);
    # with the 30 min timer it holds without an outage (one 45 min gap < 1h) but survives none for sure
    (dict(ttl=24 * H, renew_before=H, period=3600, randomized_delay=900, accuracy=0), H - 150 * M),
    (dict(ttl=24 * H, renew_before=H, period=1800, randomized_delay=900, accuracy=0), H - 90 * M),
    # renew_before longer than the lifetime: renews at every run, the lifetime is the window
    (dict(ttl=2 * H, renew_before=5 * H, period=1800, randomized_delay=0, accuracy=0), 2 * H - H),
])
def test_budget_matches_the_fleet_simulation(kwargs, budget):
    assert outage.outage_budget(**kwargs) == budget


def test_fleet_sim_6h_verdicts():
    assert outage.outage_budget(24 * H, None, 1800, 900, 0) >= 6 * H
    assert outage.outage_budget(25 * H, None, 1800, 900, 0) >= 6 * H
    assert outage.outage_budget(24 * H, None, 3600, 900, 0) < 6 * H
    assert outage.timer_gap(3600, 900, 0) > H > outage.timer_gap(1800, 900, 0)


def test_no_outage_survivable_is_said_plainly():
    assert outage.budget_of("24h", "1h", "hourly")["text"].startswith(
        "survives no Vault outage: renew_before (1h00m) is shorter than the longest time between two timer runs")
    assert outage.budget_of("24h", "1h")["text"].startswith("survives no Vault outage for sure")
    assert outage.budget_of("24h", "2h")["text"] == "survives a Vault outage of up to 0h28m"


@pytest.mark.parametrize("on_calendar,period", [
    ("*:0/30", 1800), ("*:00/30", 1800), ("*-*-* *:0/30:00", 1800), ("*:00", 3600), ("hourly", 3600),
    ("daily", 86400), ("minutely", 60), ("*:0/15:30", 900), ("0/4:15", 4 * H), ("08,20:00", 12 * H),
    ("*:0/7", 7 * M), ("*:0,10", 50 * M), ("00..05:00", 19 * H),
])
def test_timer_period_is_the_longest_gap_between_ticks(on_calendar, period):
    assert outage.timer_period_seconds(on_calendar) == period


@pytest.mark.parametrize("on_calendar", ["Mon *:00", "2026-01-01 00:00", "*:61", "soon", "", "*:0/0"])
def test_timer_period_refuses_forms_it_cannot_compute(on_calendar):
    with pytest.raises(InvalidInput) as info:
        outage.timer_period_seconds(on_calendar, "minibus_certs_timer_on_calendar")
    assert "minibus_certs_timer_on_calendar" in info.value.message and "\n" not in info.value.message


@pytest.mark.parametrize("span,seconds", [("15min", 900), ("15m", 900), ("900", 900), (900, 900), ("0", 0),
                                          ("1h 30min", 5400), ("1h30min", 5400), ("2s", 2), ("1d", 86400)])
def test_systemd_time_spans(span, seconds):
    assert outage.systemd_seconds(span) == seconds


@pytest.mark.parametrize("span", ["x", "15 parsecs", "-5", True, "5us"])
def test_systemd_time_span_refused(span):
    with pytest.raises(InvalidInput):
        outage.systemd_seconds(span)


def test_problem_names_the_values_and_what_to_change():
    assert outage.budget_problem("6h", "24h") is None
    assert outage.budget_problem("6h28m", "24h") is None
    sentence = filters.outage_budget_problem("8h", "24h", None, "*:0/30", "15min")
    assert sentence.startswith("minibus_certs_outage_budget is 8h but this configuration survives a Vault outage "
                               "of up to 6h28m (minibus_certs_ttl 24h, minibus_certs_renew_before 8h00m, "
                               "minibus_certs_timer_on_calendar *:0/30, minibus_certs_timer_randomized_delay 15min")
    assert "raise minibus_certs_renew_before to at least 9h32m" in sentence
    assert sentence.count(". ") == 0 and sentence.endswith(".") and "\n" not in sentence
    # nothing to gain from renew_before beyond the lifetime: the timer must change
    sentence = filters.outage_budget_problem("23h", "24h", None, "hourly", "15min")
    assert "would have to be 25h32m, more than minibus_certs_ttl" in sentence
    assert "lower minibus_certs_outage_budget" in sentence


def test_problem_filter_is_empty_when_met_or_unset():
    assert filters.outage_budget_problem("6h", "24h") == ""
    assert filters.outage_budget_problem(None, "24h") == ""
    assert filters.outage_budget_problem("", "24h", "1h", "hourly") == ""
    assert filters.outage_budget("24h")["outage_budget_seconds"] == 6 * H + 28 * M


@pytest.mark.parametrize("args", [("soon", "24h"), ("6h", "24h", None, "Mon *:00"), ("6h", "24h", None, None, "x")])
def test_problem_filter_bad_input_is_one_sentence(args):
    with pytest.raises(AnsibleFilterError) as info:
        filters.outage_budget_problem(*args)
    assert "\n" not in str(info.value)
