# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Benchmark P4 checks: python -m pytest bench/test_fleet_sim.py -q (500 hosts, a few seconds)."""

from __future__ import absolute_import, division, print_function

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench import fleet_sim
from ansible_collections.minibus.pki.plugins.module_utils import certs

HOSTS = 500
UTC = datetime.timezone.utc


def _run(**kwargs):
    kwargs.setdefault("hosts", HOSTS)
    kwargs.setdefault("seed", 7)
    report = fleet_sim.run(**kwargs)
    report.pop("runtime_seconds")
    return report


@pytest.fixture(scope="module")
def worst_6h_24h():
    return _run()


@pytest.fixture(scope="module")
def worst_6h_24h_hourly():
    return _run(timer_interval=3600)


@pytest.fixture(scope="module")
def worst_6h_25h():
    return _run(lifetime_hours=25)


def test_deterministic_with_a_seed(worst_6h_24h):
    assert _run() == worst_6h_24h
    assert _run(seed=8) != worst_6h_24h


def test_no_outage_no_expiry_with_default_rule():
    report = _run(outage_hours=0)
    default = report["rows"][0]
    assert report["outage"] is None
    assert default["expired_certificates"] == 0
    assert default["locked_out_hosts"] == 0
    assert default["failed_attempts"] == 0
    # 30 min timer (the role's *:0/30), 15 min jitter: a due host waits at most 45 min, so at least 8h - 45min
    assert default["min_remaining_at_renewal_seconds"] >= 8 * 3600 - 45 * 60


def test_timer_interval_is_a_parameter():
    assert _run(outage_hours=0)["parameters"]["timer_interval_seconds"] == 1800
    assert _run(outage_hours=0, timer_interval=3600)["parameters"]["timer_interval_seconds"] == 3600
    with pytest.raises(ValueError):
        _run(outage_hours=0, timer_interval=7 * 60)


def test_naive_rule_expires_even_without_outage_with_an_hourly_timer():
    # A 24h certificate renewed at < 1h left with an hourly timer + up to 15 min jitter: the run after the
    # last "not due" run can come up to 75 min later, so some certificates run out for a few minutes.
    naive = _run(outage_hours=0, timer_interval=3600)["rows"][1]
    assert naive["expired_certificates"] > 0
    assert naive["max_seconds_expired"] <= 15 * 60
    assert naive["locked_out_hosts"] == 0


def test_naive_rule_without_outage_holds_with_the_30min_timer():
    # Runs at most 45 min apart: a certificate is seen with < 1h left before it runs out.
    naive = _run(outage_hours=0)["rows"][1]
    assert naive["expired_certificates"] == 0
    assert naive["min_remaining_at_renewal_seconds"] >= 3600 - 45 * 60


def test_worst_6h_outage_default_rule_25h_certificate_expires_nothing(worst_6h_25h):
    default, naive = worst_6h_25h["rows"]
    assert default["expired_certificates"] == 0
    assert default["locked_out_hosts"] == 0
    assert default["failed_attempts"] > 0
    assert naive["expired_certificates"] > HOSTS // 10


def test_worst_6h_outage_default_rule_24h_certificate_expires_nothing(worst_6h_24h):
    # The role's timer (*:0/30 + 15 min jitter): two usable runs are at most 6h + 2 x 45min apart, so a
    # certificate found due (<= 8h left) is renewed with at least 8h - 45min - 6h - 45min = 30 min to spare.
    default = worst_6h_24h["rows"][0]
    assert worst_6h_24h["parameters"]["timer_interval_seconds"] == 1800
    assert default["expired_certificates"] == 0
    assert default["locked_out_hosts"] == 0
    assert default["failed_attempts"] > 0
    assert default["min_remaining_at_renewal_seconds"] >= 30 * 60


def test_worst_6h_outage_default_rule_24h_certificate_expires_with_an_hourly_timer(worst_6h_24h_hourly):
    # Why the timer moved from hourly to *:0/30: with the 24h ttl, lifetime//3 is exactly 8h, on the hourly
    # grid; a 6h outage can block 7 consecutive timer runs of a host (first run late in its jitter band, last
    # one early), so the gap between two usable runs reaches 8h15m > 8h and a few certificates expire for
    # minutes (34 of 10,000 hosts with the defaults).
    default = worst_6h_24h_hourly["rows"][0]
    assert default["expired_certificates"] > 0
    assert default["max_seconds_expired"] <= 15 * 60
    assert default["locked_out_hosts"] == 0


def test_worst_6h_outage_24h_default_rule_far_better_than_naive(worst_6h_24h):
    default, naive = worst_6h_24h["rows"]
    assert default["locked_out_hosts"] == 0
    assert default["max_seconds_expired"] <= 15 * 60
    assert naive["expired_certificates"] > HOSTS // 10
    assert naive["locked_out_hosts"] > 0
    assert default["expired_certificates"] * 20 < naive["expired_certificates"]


def test_scan_predicts_the_simulated_expiries(worst_6h_24h, worst_6h_25h, worst_6h_24h_hourly):
    for report in (worst_6h_24h, worst_6h_25h, worst_6h_24h_hourly):
        default = report["rows"][0]
        assert default["predicted_expired_by_scan"] == default["expired_certificates"]
        assert report["outage"]["end_seconds"] - report["outage"]["start_seconds"] == 6 * 3600


def test_failed_attempts_cost_a_request_in_error_mode():
    refused = _run(outage_start=2, outage_mode="refused")["rows"][0]
    error = _run(outage_start=2, outage_mode="error")["rows"][0]
    assert refused["failed_attempts"] == error["failed_attempts"] > 0
    assert error["vault_requests"] == refused["vault_requests"] + error["failed_attempts"]


# ---------------------------------------------------------------------------------------------------
# The simulation's rule against the real certs.needs_renewal
# ---------------------------------------------------------------------------------------------------

KEY = ec.generate_private_key(ec.SECP256R1())
KEY_PEM = KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode("ascii")
REQUEST = {"common_name": "host.example.test", "alt_names": [], "ip_sans": [], "key_type": "ec", "key_bits": 256}
T0 = datetime.datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


def _cert_pem(not_before, not_after):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, REQUEST["common_name"])])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(KEY.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(REQUEST["common_name"])]), critical=False)
            .sign(KEY, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _epoch(dt):
    return (dt - T0).total_seconds()


@pytest.mark.parametrize("lifetime, renew_before", [
    (24 * 3600, None),          # the role's ttl: threshold 8h
    (24 * 3600 + 30, None),     # ... with Vault's 30 s back-dating of not_before: 28810 s
    (25 * 3600, None),          # the PKI role's max_ttl: 8h20m
    (24 * 3600 + 31, None),     # lifetime not divisible by 3: floor division
    (24 * 3600, 3600),          # the naive rule
])
def test_model_threshold_matches_real_needs_renewal(lifetime, renew_before):
    not_before = T0
    not_after = T0 + datetime.timedelta(seconds=lifetime)
    pem = _cert_pem(not_before, not_after)
    threshold = renew_before if renew_before is not None else lifetime // 3
    cases = [
        (not_after - datetime.timedelta(seconds=threshold), True),         # just inside: remaining == threshold
        (not_after - datetime.timedelta(seconds=threshold + 1), False),    # just outside
        (not_after - datetime.timedelta(seconds=threshold, microseconds=500000), True),  # int() truncation
        (not_after + datetime.timedelta(seconds=1), True),                  # expired
        (not_before + datetime.timedelta(seconds=1), False),                # fresh
    ]
    for now, expected in cases:
        real = certs.needs_renewal(pem, KEY_PEM, REQUEST, now=now, renew_before=renew_before)
        model = fleet_sim.needs_renewal_model(_epoch(not_before), _epoch(not_after), _epoch(now), renew_before)
        assert real.needed is expected, (now, real.reason)
        assert model is expected, now
    if renew_before is None:
        assert fleet_sim.default_renew_before(lifetime) == threshold


@pytest.mark.parametrize("interval", [1800, 3600])
def test_outage_budget_bounds_the_simulated_worst_outage(interval):
    """plugins/module_utils/outage.py's budget (AccuracySec is not simulated: accuracy 0) is safe and not loose.

    An outage as long as the budget, at the scan's worst start, expires nothing; one timer gap longer, it does.
    """
    from ansible_collections.minibus.pki.plugins.module_utils import outage
    budget = outage.outage_budget(24 * 3600, None, interval, 900, accuracy=0)
    gap = outage.timer_gap(interval, 900, accuracy=0)
    at_budget = _run(outage_hours=budget / 3600.0, timer_interval=interval)
    assert at_budget["rows"][0]["expired_certificates"] == 0
    assert at_budget["scan"]["predicted"][0]["min_margin_seconds"] >= 0
    beyond = _run(outage_hours=(budget + gap) / 3600.0, timer_interval=interval)
    assert beyond["rows"][0]["expired_certificates"] > 0
