# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""The longest Vault outage a host survives without an expired certificate, from its configuration.

The renewal timer fires at every OnCalendar tick plus a fresh random delay in [0, RandomizedDelaySec),
and systemd may add up to AccuracySec (1 min unless set) on top. So two consecutive runs of one host
are at most ``gap = tick period + RandomizedDelaySec + AccuracySec`` apart. A certificate becomes due
``renew_before`` before it expires (one third of its lifetime unless set, certs.default_renew_before).
The worst moment for an outage to start is the very run that would have renewed a certificate: that
run can come up to one gap after the certificate became due, and once Vault is back the first run
can come up to one gap after the end of the outage. Hence:

    budget = min(renew_before, ttl) - 2 * gap

24h ttl, default renew_before (8h), ``*:0/30`` and 15 min: 8h - 2 x 46 min = 6h28m. Any outage no
longer than the budget, whenever it starts, leaves every certificate valid until its host renews.
bench/fleet_sim.py simulates the same timer and renewal rule on a fleet; bench/test_fleet_sim.py
checks that its worst outages agree with this bound. The secret id (25 h by default, longer than
the certificate) does not shorten the budget unless its TTL is below the certificate's.

Shared by the renewer (``--status``) and the role's preflight (filter minibus.pki.outage_budget_problem).
Plain Python, no Ansible import.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

from .certs import default_renew_before, parse_duration
from .errors import InvalidInput

# The role's defaults (roles/minibus_certs/defaults/main.yml) and systemd's default AccuracySec.
DEFAULT_TIMER_ON_CALENDAR = "*:0/30"
DEFAULT_TIMER_RANDOMIZED_DELAY = "15min"
TIMER_ACCURACY_SECONDS = 60

_DAY = 86400
_SHORTHANDS = {"minutely": 60, "hourly": 3600, "daily": _DAY, "weekly": 7 * _DAY}
_SPAN_UNITS = {
    "": 1, "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": _DAY, "day": _DAY, "days": _DAY,
    "w": 7 * _DAY, "week": 7 * _DAY, "weeks": 7 * _DAY,
}
_SPAN_PART = re.compile(r"(\d+)\s*([a-z]*)")


def systemd_seconds(value, name="RandomizedDelaySec"):
    """Seconds in a systemd time span: 900, '900', '15min', '15m', '1h 30min', '0'."""
    if isinstance(value, bool):
        raise InvalidInput("%s must be a time span such as 15min, not a boolean." % name)
    if isinstance(value, int):
        if value < 0:
            raise InvalidInput("%s must not be negative." % name)
        return value
    text = str(value).strip().lower()
    total, pos = 0, 0
    for match in _SPAN_PART.finditer(text):
        if text[pos:match.start()].strip() or match.group(2) not in _SPAN_UNITS:
            break
        total += int(match.group(1)) * _SPAN_UNITS[match.group(2)]
        pos = match.end()
    else:
        if text and not text[pos:].strip():
            return total
    raise InvalidInput("%s %r is not a systemd time span: write it like 15min, 900 or 1h 30min." % (name, value))


def _calendar_values(field, limit):
    """The values of one H/M/S field of an OnCalendar time: *, N, N..M, with /step, comma lists."""
    values = set()
    for item in field.split(","):
        match = re.match(r"^(\*|\d+)(?:\.\.(\d+))?(?:/(\d+))?$", item)
        if not match:
            raise ValueError(item)
        start = 0 if match.group(1) == "*" else int(match.group(1))
        end = int(match.group(2)) if match.group(2) else (limit - 1 if match.group(1) == "*" or match.group(3)
                                                          else start)
        step = int(match.group(3) or 1)
        if step <= 0 or start >= limit or end >= limit or end < start:
            raise ValueError(item)
        values.update(range(start, end + 1, step))
    return sorted(values)


def timer_period_seconds(on_calendar, name="OnCalendar"):
    """The longest time between two ticks of an every-day OnCalendar expression, in seconds.

    minutely, hourly, daily, weekly, and times (with an optional ``*-*-*`` date) such as ``*:0/30``,
    ``*:00``, ``*-*-* 0/4:15:00`` or ``08,20:00``. Other dates and weekdays: InvalidInput.
    """
    text = " ".join(str(on_calendar or "").split())
    if text.lower() in _SHORTHANDS:
        return _SHORTHANDS[text.lower()]
    parts = text.split(" ")
    if len(parts) == 2 and parts[0] == "*-*-*":
        parts = parts[1:]
    fields = parts[0].split(":") if len(parts) == 1 else []
    if len(fields) == 2:
        fields.append("0")
    try:
        if len(fields) != 3:
            raise ValueError(text)
        hours, minutes, seconds = (_calendar_values(f, lim) for f, lim in zip(fields, (24, 60, 60)))
    except ValueError:
        raise InvalidInput("%s %r is not a form whose period can be computed: use an every-day time such as "
                           "*:0/30, hourly or 0/4:00." % (name, on_calendar))
    ticks = sorted(h * 3600 + m * 60 + s for h in hours for m in minutes for s in seconds)
    gaps = [b - a for a, b in zip(ticks, ticks[1:])] + [ticks[0] + _DAY - ticks[-1]]
    return max(gaps)


def outage_budget(ttl, renew_before=None, period=1800, randomized_delay=900, accuracy=TIMER_ACCURACY_SECONDS):
    """Seconds of Vault outage, starting at any moment, that no certificate expires in (negative: none).

    ttl, renew_before (None: one third of ttl), period, randomized_delay, accuracy: seconds.
    """
    threshold = default_renew_before(ttl) if renew_before is None else int(renew_before)
    return min(threshold, int(ttl)) - 2 * timer_gap(period, randomized_delay, accuracy)


def timer_gap(period, randomized_delay, accuracy=TIMER_ACCURACY_SECONDS):
    """The longest time between two runs of one host's timer."""
    return int(period) + int(randomized_delay) + int(accuracy)


_NAMES = {"ttl": "ttl", "renew_before": "renew_before", "on_calendar": "OnCalendar",
          "randomized_delay": "RandomizedDelaySec", "wanted": "the outage budget"}


def budget_of(ttl, renew_before=None, on_calendar=None, randomized_delay=None, names=None):
    """The budget of one configuration as written (durations as the role and the renewer take them).

    Returns a dict: outage_budget_seconds, renew_before_seconds, timer_gap_seconds, ttl_seconds, text.
    names: what to call each value in an error sentence (see budget_problem).
    """
    names = dict(_NAMES, **(names or {}))
    ttl_s = parse_duration(ttl, names["ttl"])
    if renew_before in (None, ""):
        renew_s = default_renew_before(ttl_s)
    else:
        renew_s = parse_duration(renew_before, names["renew_before"])
    on_calendar = DEFAULT_TIMER_ON_CALENDAR if on_calendar in (None, "") else on_calendar
    delay = DEFAULT_TIMER_RANDOMIZED_DELAY if randomized_delay in (None, "") else randomized_delay
    gap = timer_gap(timer_period_seconds(on_calendar, names["on_calendar"]),
                    systemd_seconds(delay, names["randomized_delay"]))
    budget = min(renew_s, ttl_s) - 2 * gap
    return {"outage_budget_seconds": budget, "renew_before_seconds": renew_s, "timer_gap_seconds": gap,
            "ttl_seconds": ttl_s, "text": describe(budget, renew_s, gap)}


def describe(budget, renew_before, gap):
    """One phrase: 'survives a Vault outage of up to 6h28m', or why it survives none."""
    if budget > 0:
        return "survives a Vault outage of up to %s" % human(budget)
    if renew_before < gap:
        return ("survives no Vault outage: renew_before (%s) is shorter than the longest time between two timer "
                "runs (%s), so a certificate can expire even while Vault is up" % (human(renew_before), human(gap)))
    return ("survives no Vault outage for sure: renew_before (%s) leaves less than two timer gaps (2 x %s)"
            % (human(renew_before), human(gap)))


def human(seconds):
    """6h28m (whole minutes, rounded down: the budget is never overstated)."""
    seconds = max(0, int(seconds))
    return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)


def budget_problem(wanted, ttl, renew_before=None, on_calendar=None, randomized_delay=None, names=None):
    """None when the configuration survives an outage of ``wanted``; else one sentence naming what to change.

    names maps ttl, renew_before, on_calendar, randomized_delay, wanted to the variable names to cite.
    """
    names = dict(_NAMES, **(names or {}))
    wanted_s = parse_duration(wanted, names["wanted"])
    info = budget_of(ttl, renew_before, on_calendar, randomized_delay, names)
    if info["outage_budget_seconds"] >= wanted_s:
        return None
    needed = wanted_s + 2 * info["timer_gap_seconds"]
    if needed <= info["ttl_seconds"]:
        change = ("raise %s to at least %s, or make the timer run more often or with less jitter"
                  % (names["renew_before"], human(needed + 59)))
    else:
        change = ("%s would have to be %s, more than %s: make the timer run more often or with less jitter, or "
                  "lower %s" % (names["renew_before"], human(needed + 59), names["ttl"], names["wanted"]))
    return ("%s is %s but this configuration %s (%s %s, %s %s, %s %s, %s %s, %ds timer accuracy; budget = "
            "renew_before - 2 x %s between two timer runs): %s."
            % (names["wanted"], wanted, info["text"], names["ttl"], ttl, names["renew_before"],
               human(info["renew_before_seconds"]) if renew_before in (None, "") else renew_before,
               names["on_calendar"], on_calendar or DEFAULT_TIMER_ON_CALENDAR, names["randomized_delay"],
               randomized_delay or DEFAULT_TIMER_RANDOMIZED_DELAY, TIMER_ACCURACY_SECONDS,
               human(info["timer_gap_seconds"]), change))
