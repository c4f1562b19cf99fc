# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark P4: a fleet simulation of on-host renewal (no hosts, no network, no Vault).

What is modelled
----------------
* ``--hosts`` hosts, each holding one certificate of lifetime L (``--lifetime-hours``, default 24: the role's
  ``minibus_certs_ttl``; ``--backdate-seconds`` adds Vault's not_before back-dating to the *lifetime* as
  ``certs.describe`` measures it, default 0).
* The renewal rule mirrors ``plugins/module_utils/certs.py:needs_renewal`` (its last lines):
  ``remaining = max(0, int(not_after - now))``; renew when ``remaining <= 0`` or ``remaining <= threshold``
  with ``threshold = renew_before`` if given, else ``lifetime_seconds // 3``. The rule lives in
  ``needs_renewal_model()`` below and is called by the simulation loop for every timer run;
  ``bench/test_fleet_sim.py`` checks it against the real ``needs_renewal`` on real certificates just
  inside and just outside the threshold. (The real function needs PEM certificates and a key, far too slow
  for 10,000 hosts x 96 timer runs, and it has no separate threshold constant to import.)
* The timer of the role: ``OnCalendar=*:0/30`` (``--timer-interval``, default 30min; ``3600``/``1h`` models
  the earlier ``OnCalendar=hourly``) + ``RandomizedDelaySec=15min`` (``--randomized-delay``): every host
  fires at every multiple of the interval (full hour and half hour) plus a fresh uniform delay in
  [0, 15 min) (systemd re-draws the delay each time unless FixedRandomDelay=yes). Host clocks are in sync
  (NTP), so the whole fleet fires in the same 15 minutes after each tick. The interval must divide one
  hour or be a multiple of it (t = 0 is a full hour and a tick). ``Persistent=true`` and ``OnBootSec`` only matter for hosts that
  were down; simulated hosts never are, so they have no effect here. AccuracySec (default 1 min) is not
  modelled (it would spread the load a little more and widen the worst gap by up to a minute).
* A timer run on a host whose certificate is due is one renewal attempt = 5 Vault requests (login, mint
  the next secret id wrapped, unwrap, sign, revoke-self), all counted in the second the run starts. A
  run whose certificate is not due makes 0 requests.
* The secret id stored on the host lives ``--secret-id-ttl-hours`` (25) from its minting at the last
  successful renewal. A timer run that finds it expired cannot log in ever again: the host is locked
  out (until an Ansible run re-bootstraps it, which is not modelled) and makes no more requests.
* A Vault outage of ``--outage-hours`` (6). During it renewal attempts fail; they are counted
  (``failed attempts``) and cost 0 Vault requests with ``--outage-mode refused`` (connection refused,
  the default) or 1 request (the failed login) with ``--outage-mode error``.
* "The worst moment" for the outage: from a baseline run without outage, every candidate start s in
  ``[0, L)`` (``--scan-step-seconds``, default 300 s) is scored by the number of hosts whose certificate
  (the one they hold at s) would expire before their first timer run at or after s + D, i.e. before they
  can renew; ties (typically all zero) are broken by the smallest such margin over the fleet. The scan is
  done for the rule of the first row (the default rule) and the same window is then used for both rows.
* Initial state (``--init``): ``steady`` (default) draws each certificate's issue time uniformly over the
  previous renewal period ``L - threshold``; ``lifetime`` draws it uniformly over the previous lifetime
  (then a third of the fleet is already due at the start and renews in one burst). Either way the
  simulation starts ``--warmup-hours`` (default L) before t = 0 so that every host has renewed at least
  once on its own timer; nothing before t = 0 is counted.
* Time is event-driven in the simplest exact way: the only events are timer runs, which come tick by
  tick, so the loop walks the ticks and, inside a tick, the hosts. Expiry needs no event of its own: a
  certificate expired if the renewal that replaces it (or the end of the simulation) comes after its
  not_after.

Usage: python bench/fleet_sim.py --hosts 10000 [--json out.json]
"""

from __future__ import absolute_import, division, print_function

import argparse
import bisect
import collections
import json
import math
import random
import re
import sys
import time

HOUR = 3600
REQUESTS_PER_RENEWAL = 5  # login, mint wrapped secret id, unwrap, sign, revoke-self


# --------------------------------------------------------------------------------------------------
# The renewal rule (mirror of certs.needs_renewal's time-based part; cross-checked in test_fleet_sim.py)
# --------------------------------------------------------------------------------------------------

def default_renew_before(lifetime_seconds):
    """certs.needs_renewal with renew_before=None: one third of the lifetime, integer seconds."""
    return int(lifetime_seconds) // 3


def needs_renewal_model(not_before, not_after, now, renew_before=None):
    """True when certs.needs_renewal would renew a matching certificate valid [not_before, not_after] at now.

    All times in seconds (floats fine). Same arithmetic as certs.describe/needs_renewal: seconds_remaining and
    lifetime_seconds are int() of the differences, remaining is clamped at 0, and the comparison is <=.
    """
    remaining = max(0, int(not_after - now))
    if remaining <= 0:
        return True
    threshold = renew_before if renew_before is not None else default_renew_before(int(not_after - not_before))
    return remaining <= threshold


# --------------------------------------------------------------------------------------------------
# Simulation
# --------------------------------------------------------------------------------------------------

class Fleet(object):
    """Random inputs shared by every run of one configuration (common random numbers across rules)."""

    def __init__(self, hosts, seed, first_tick, last_tick, randomized_delay, interval=HOUR):
        rng = random.Random(seed)
        self.hosts = hosts
        self.interval = interval  # seconds between two OnCalendar ticks
        self.phase = [rng.random() for dummy in range(hosts)]  # position in the previous period, 0..1
        self.first_tick = first_tick
        self.jitter = {}
        for k in range(first_tick, last_tick + 1):
            self.jitter[k] = [rng.random() * randomized_delay for dummy in range(hosts)]

    def firing(self, host, tick):
        return tick * self.interval + self.jitter[tick][host]

    def first_firing_at_or_after(self, host, t):
        k = int(math.floor(t / self.interval))
        f = self.firing(host, k)
        if f < t:
            f = self.firing(host, k + 1)
        return f

    def last_firing_at_or_before(self, host, t):
        k = int(math.floor(t / self.interval))
        f = self.firing(host, k)
        if f > t:
            f = self.firing(host, k - 1)
        return f


def simulate(fleet, cfg, renew_before, outage=None, record_renewals=False):
    """One run. renew_before: seconds or None (lifetime // 3). outage: (start, end) seconds or None."""
    n = fleet.hosts
    ttl = cfg["lifetime"]
    lifetime = ttl + cfg["backdate"]  # what certs.describe measures: not_after - not_before
    threshold = renew_before if renew_before is not None else default_renew_before(lifetime)
    sid_ttl = cfg["secret_id_ttl"]
    warmup = cfg["warmup"]
    horizon = cfg["horizon"]
    period = ttl - threshold if cfg["init"] == "steady" else ttl
    start = -warmup

    issued = [start - fleet.phase[h] * period for h in range(n)]
    not_after = [t + ttl for t in issued]
    not_before = [t - cfg["backdate"] for t in issued]
    sid_exp = [t + sid_ttl for t in issued]
    locked = [False] * n
    renewals = [[t] for t in issued] if record_renewals else None

    per_second = collections.Counter()
    expired_events = 0
    expired_hosts = set()
    expired_seconds_max = 0.0
    locked_out = 0
    failed_attempts = 0
    renewals_counted = 0
    min_remaining = None
    o_start, o_end = outage if outage else (None, None)
    error_mode = cfg["outage_mode"] == "error"

    interval = fleet.interval
    first_tick = int(math.floor(start / interval))
    last_tick = int(math.ceil(horizon / interval)) - 1
    for k in range(first_tick, last_tick + 1):
        jit = fleet.jitter[k]
        base = k * interval
        for h in range(n):
            if locked[h]:
                continue
            t = base + jit[h]
            if t < start or t >= horizon:
                continue
            counted = t >= 0
            if sid_exp[h] <= t:  # secret_store.problem: expires_at <= now -> "No usable Vault credentials"
                locked[h] = True
                if counted:
                    locked_out += 1
                continue
            if not needs_renewal_model(not_before[h], not_after[h], t, renew_before):
                continue
            if o_start is not None and o_start <= t < o_end:
                if counted:
                    failed_attempts += 1
                    if error_mode:
                        per_second[int(t)] += 1
                continue
            na = not_after[h]
            if t > na and na >= 0:
                expired_events += 1
                expired_hosts.add(h)
                expired_seconds_max = max(expired_seconds_max, t - na)
            if counted:
                renewals_counted += 1
                per_second[int(t)] += REQUESTS_PER_RENEWAL
                remaining = na - t
                if min_remaining is None or remaining < min_remaining:
                    min_remaining = remaining
            not_after[h] = t + ttl
            not_before[h] = t - cfg["backdate"]
            sid_exp[h] = t + sid_ttl
            if record_renewals:
                renewals[h].append(t)
    # Certificates still held at the end that ran out within the measured period (locked-out hosts).
    for h in range(n):
        if 0 <= not_after[h] < horizon:
            expired_events += 1
            expired_hosts.add(h)
            expired_seconds_max = max(expired_seconds_max, horizon - not_after[h])

    per_minute = collections.Counter()
    for sec, count in per_second.items():
        per_minute[sec // 60] += count
    total = sum(per_second.values())
    peak_sec = max(per_second.items(), key=lambda kv: (kv[1], -kv[0])) if per_second else (None, 0)
    peak_min = max(per_minute.items(), key=lambda kv: (kv[1], -kv[0])) if per_minute else (None, 0)
    before = [c for s, c in per_second.items() if o_start is None or s < o_start]
    result = {
        "renew_before_seconds": threshold,
        "expired_certificates": expired_events,
        "expired_hosts": len(expired_hosts),
        "max_seconds_expired": round(expired_seconds_max, 1),
        "locked_out_hosts": locked_out,
        "failed_attempts": failed_attempts,
        "renewals": renewals_counted,
        "vault_requests": total,
        "peak_requests_per_second": peak_sec[1],
        "peak_second_at": peak_sec[0],
        "peak_requests_per_second_minute_avg": round(peak_min[1] / 60.0, 2),
        "peak_minute_at": None if peak_min[0] is None else peak_min[0] * 60,
        "peak_requests_per_second_before_outage": max(before) if before else 0,
        "mean_requests_per_second": round(total / float(horizon), 3),
        "min_remaining_at_renewal_seconds": None if min_remaining is None else round(min_remaining, 1),
    }
    return result, renewals


def score_windows(fleet, cfg, renewals, duration, candidates):
    """For each candidate start s: (hosts that would expire, smallest margin, hosts that would be locked out).

    A host holding at s the certificate of its last renewal r < s can next renew at its first timer run b at
    or after s + duration; it expires if not_after = r + L < b; it is locked out if r + secret_id_ttl <= b.
    """
    ttl, sid_ttl = cfg["lifetime"], cfg["secret_id_ttl"]
    out = []
    for s in candidates:
        end = s + duration
        expire = lock = 0
        margin = None
        for h in range(fleet.hosts):
            times = renewals[h]
            r = times[bisect.bisect_left(times, s) - 1]
            b = fleet.first_firing_at_or_after(h, end)
            m = r + ttl - b
            if m < 0:
                expire += 1
            if r + sid_ttl <= b:
                lock += 1
            if margin is None or m < margin:
                margin = m
        out.append((s, expire, margin, lock))
    return out


def run(hosts=10000, seed=1, lifetime_hours=24.0, backdate_seconds=0, renew_before=None,
        naive_renew_before=3600, outage_hours=6.0, outage_start=None, hours=72.0, warmup_hours=None,
        randomized_delay=900, secret_id_ttl_hours=25.0, outage_mode="refused", init="steady",
        scan_step_seconds=300, timer_interval=1800):
    """Both rows (the rule under test, then the naive rule) under the same outage. Returns a JSON-able dict."""
    t0 = time.time()
    lifetime = int(round(lifetime_hours * HOUR))
    cfg = {
        "lifetime": lifetime,
        "backdate": int(backdate_seconds),
        "secret_id_ttl": int(round(secret_id_ttl_hours * HOUR)),
        "warmup": int(round((warmup_hours if warmup_hours is not None else lifetime_hours) * HOUR)),
        "horizon": int(round(hours * HOUR)),
        "outage_mode": outage_mode,
        "init": init,
    }
    duration = int(round(outage_hours * HOUR))
    interval = int(timer_interval)
    if interval <= 0 or (HOUR % interval and interval % HOUR):
        raise ValueError("timer_interval %r must divide one hour or be a multiple of it" % (timer_interval,))
    fleet = Fleet(hosts, seed, int(math.floor(-cfg["warmup"] / interval)) - 1,
                  int(math.ceil(cfg["horizon"] / interval)) + 3, randomized_delay, interval)
    rules = [("renew_before = lifetime/3 (default)" if renew_before is None else
              "renew_before = %ds" % renew_before, renew_before),
             ("renew_before = %ds (naive)" % naive_renew_before, naive_renew_before)]

    window = None
    scan = None
    if duration > 0:
        dummy, baseline = simulate(fleet, cfg, rules[0][1], None, record_renewals=True)
        dummy, naive_baseline = simulate(fleet, cfg, rules[1][1], None, record_renewals=True)
        if outage_start is None:
            step = int(scan_step_seconds)
            candidates = list(range(0, lifetime, step))
            if candidates[-1] + duration > cfg["horizon"]:
                raise SystemExit("--hours is too short for scanning outage starts over one lifetime")
            scores = score_windows(fleet, cfg, baseline, duration, candidates)
            best = max(scores, key=lambda x: (x[1], -x[2], -x[0]))
            start = best[0]
            naive_scores = score_windows(fleet, cfg, naive_baseline, duration, candidates)
            naive_at = [x for x in naive_scores if x[0] == start][0]
            naive_best = max(naive_scores, key=lambda x: (x[1], -x[2], -x[0]))
            scan = {
                "step_seconds": step, "candidates": len(candidates),
                "predicted": [{"expired": best[1], "min_margin_seconds": round(best[2], 1), "locked_out": best[3]},
                              {"expired": naive_at[1], "min_margin_seconds": round(naive_at[2], 1),
                               "locked_out": naive_at[3]}],
                "default_rule_windows_with_expiry": sum(1 for x in scores if x[1] > 0),
                "naive_rule_worst_start_seconds": naive_best[0], "naive_rule_worst_expired": naive_best[1],
            }
        else:
            start = int(round(outage_start * HOUR))
        window = (start, start + duration)

    rows = []
    for name, rb in rules:
        result, dummy = simulate(fleet, cfg, rb, window)
        result["rule"] = name
        if scan:
            result["predicted_expired_by_scan"] = scan["predicted"][len(rows)]["expired"]
        rows.append(result)
    return {
        "parameters": {
            "hosts": hosts, "seed": seed, "lifetime_seconds": lifetime, "backdate_seconds": cfg["backdate"],
            "secret_id_ttl_seconds": cfg["secret_id_ttl"], "simulated_seconds": cfg["horizon"],
            "warmup_seconds": cfg["warmup"], "randomized_delay_seconds": randomized_delay,
            "timer_interval_seconds": interval,
            "outage_seconds": duration, "outage_mode": outage_mode, "init": init,
            "requests_per_renewal": REQUESTS_PER_RENEWAL,
        },
        "outage": None if window is None else {
            "start_seconds": window[0], "end_seconds": window[1], "start": _clock(window[0]),
            "end": _clock(window[1]), "chosen_by": "scan" if scan else "--outage-start"},
        "scan": scan,
        "rows": rows,
        "runtime_seconds": round(time.time() - t0, 2),
    }


# --------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------

def _clock(seconds):
    """t=+26h07m30s style (t=0 is a full hour)."""
    sign = "-" if seconds < 0 else "+"
    seconds = abs(int(round(seconds)))
    return "t%s%dh%02dm%02ds" % (sign, seconds // 3600, seconds % 3600 // 60, seconds % 60)


def _dur(seconds):
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    seconds = abs(int(round(seconds)))
    return "%s%dh%02dm%02ds" % (sign, seconds // 3600, seconds % 3600 // 60, seconds % 60)


def markdown(report):
    p = report["parameters"]
    lines = []
    lines.append("Fleet: %d hosts, lifetime %s (+%ds backdate), secret id ttl %s, timer every %s + %ds jitter, "
                 "%s simulated after %s warm-up, seed %d, init %s."
                 % (p["hosts"], _dur(p["lifetime_seconds"]), p["backdate_seconds"], _dur(p["secret_id_ttl_seconds"]),
                    _dur(p["timer_interval_seconds"]), p["randomized_delay_seconds"], _dur(p["simulated_seconds"]), _dur(p["warmup_seconds"]),
                    p["seed"], p["init"]))
    if report["outage"]:
        o = report["outage"]
        where = ""
        if report["scan"]:
            s = report["scan"]
            where = (" (worst of %d starts scanned every %ds over one lifetime; %d of them would expire a "
                     "certificate under the first rule; the naive rule's own worst start is %s with %d)"
                     % (s["candidates"], s["step_seconds"], s["default_rule_windows_with_expiry"],
                        _clock(s["naive_rule_worst_start_seconds"]), s["naive_rule_worst_expired"]))
        lines.append("Outage: %s, %s to %s, attempts %s%s." % (
            _dur(p["outage_seconds"]), o["start"], o["end"],
            "refused (0 requests)" if p["outage_mode"] == "refused" else "fail at login (1 request)", where))
    else:
        lines.append("Outage: none.")
    lines.append("")
    head = ["rule", "expired certs (hosts)", "predicted by scan", "longest expired", "locked out",
            "failed attempts", "renewals", "peak req/s (1 s)", "peak req/s (1 min / 60)", "peak req/s before outage",
            "mean req/s", "min remaining at renewal"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" for dummy in head) + "|")
    for r in report["rows"]:
        lines.append("| " + " | ".join(str(x) for x in [
            "%s [%s]" % (r["rule"], _dur(r["renew_before_seconds"])),
            "%d (%d)" % (r["expired_certificates"], r["expired_hosts"]),
            r.get("predicted_expired_by_scan", "-"), _dur(r["max_seconds_expired"]), r["locked_out_hosts"],
            r["failed_attempts"], r["renewals"],
            "%d at %s" % (r["peak_requests_per_second"], _clock(r["peak_second_at"] or 0)),
            "%.2f" % r["peak_requests_per_second_minute_avg"], r["peak_requests_per_second_before_outage"],
            "%.3f" % r["mean_requests_per_second"], _dur(r["min_remaining_at_renewal_seconds"])]) + " |")
    lines.append("")
    lines.append("runtime %.2fs" % report["runtime_seconds"])
    return "\n".join(lines)


def _duration_arg(text):
    """Seconds from 3600, 3600s, 90m, 8h, 8h15m, 1d (like certs.parse_duration, without importing it)."""
    match = re.match(r"^\s*(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?\s*$", str(text))
    if not match or not any(match.groups()):
        raise argparse.ArgumentTypeError("%r is not a duration such as 3600, 90m, 8h15m" % (text,))
    days, hours, minutes, secs = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + secs


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--hosts", type=int, default=10000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--lifetime-hours", type=float, default=24.0, help="certificate ttl (role default 24h)")
    ap.add_argument("--backdate-seconds", type=int, default=0,
                    help="Vault back-dates not_before (30 s): adds to the lifetime that sets lifetime//3")
    ap.add_argument("--renew-before", type=_duration_arg, default=None,
                    help="first row's renew_before (default: lifetime // 3, the module default)")
    ap.add_argument("--naive-renew-before", type=_duration_arg, default=3600, help="second row (default 1h)")
    ap.add_argument("--outage-hours", type=float, default=6.0, help="0 for no outage")
    ap.add_argument("--outage-start", type=float, default=None,
                    help="hours after t=0; default: the worst start found by the scan")
    ap.add_argument("--outage-mode", choices=["refused", "error"], default="refused")
    ap.add_argument("--hours", type=float, default=72.0, help="simulated (measured) time")
    ap.add_argument("--warmup-hours", type=float, default=None, help="default: one lifetime")
    ap.add_argument("--timer-interval", type=_duration_arg, default=1800,
                    help="OnCalendar period: 30min (the role's *:0/30, default) or 1h (the earlier hourly)")
    ap.add_argument("--randomized-delay", type=_duration_arg, default=900, help="RandomizedDelaySec (15min)")
    ap.add_argument("--secret-id-ttl-hours", type=float, default=25.0)
    ap.add_argument("--init", choices=["steady", "lifetime"], default="steady")
    ap.add_argument("--scan-step-seconds", type=int, default=300)
    ap.add_argument("--json", help="also write the report as JSON to this path")
    a = ap.parse_args(argv)
    report = run(hosts=a.hosts, seed=a.seed, lifetime_hours=a.lifetime_hours, backdate_seconds=a.backdate_seconds,
                 renew_before=a.renew_before, naive_renew_before=a.naive_renew_before, outage_hours=a.outage_hours,
                 outage_start=a.outage_start, hours=a.hours, warmup_hours=a.warmup_hours,
                 randomized_delay=a.randomized_delay, secret_id_ttl_hours=a.secret_id_ttl_hours,
                 outage_mode=a.outage_mode, init=a.init, scan_step_seconds=a.scan_step_seconds,
                 timer_interval=a.timer_interval)
    print(markdown(report))
    if a.json:
        with open(a.json, "w") as handle:
            json.dump(report, handle, indent=2, sort_keys=True)
            handle.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
