# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The minibus_certs local fact (fact.local_fact / fact_main) and the role's decision from it (fact_plan)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import io
import json

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import secret_store
from ansible_collections.minibus.pki.plugins.module_utils.fact import (
    FACT_MAX_AGE_SECONDS, FACT_SCHEMA_VERSION, fact_main, fact_plan, local_fact
)
from ansible_collections.minibus.pki.plugins.module_utils.files import CertStore

from pki_test_helpers import key_pem, make_cert, new_key

NOW = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
EPOCH = int(NOW.timestamp())
SECRET = "s.this-secret-id-must-never-show"


def _config(tmp_path, **extra):
    config = {"url": "https://vault.invalid:8200", "role_id": "minibus/csr", "approle_name": "minibus-csr",
              "common_name": "host.example.org", "alt_names": ["alias.example.org"], "ip_sans": ["127.0.0.1"],
              "key_type": "ec", "key_bits": 256, "ttl": "24h",
              "cert_path": str(tmp_path / "tls" / "cert.pem"), "key_path": str(tmp_path / "tls" / "key.pem"),
              "chain_path": None, "fullchain_path": None,
              "secret_id_store": str(tmp_path / "state" / "secret-id.json")}
    config.update(extra)
    (tmp_path / "state").mkdir(exist_ok=True)
    return config


def _install(config, hours_left=20, lifetime_hours=24, key=None, cert_key=None):
    key = key or new_key("ec")
    not_after = NOW + datetime.timedelta(hours=hours_left)
    cert = make_cert(cert_key or key, common_name=config["common_name"],
                     dns=[config["common_name"]] + config["alt_names"], ips=config["ip_sans"],
                     not_before=not_after - datetime.timedelta(hours=lifetime_hours), not_after=not_after)
    CertStore(config["cert_path"], config["key_path"]).install({"cert": cert, "key": key_pem(key)}, "0a")


def _store_secret(config, ttl=25 * 3600):
    secret_store.save(config["secret_id_store"], SECRET, "acc-1", ttl, now=NOW)


def _role_request(config):
    """What the role passes: the same options, spelled as role variables template them."""
    return dict((k, config.get(k)) for k in ("common_name", "alt_names", "ip_sans", "key_type", "key_bits",
                                             "renew_before", "cert_path", "key_path", "chain_path",
                                             "fullchain_path", "secret_id_store", "owner"))


# --- the fact -------------------------------------------------------------------------------------------------

def test_fact_of_a_good_host_says_nothing_is_needed_and_holds_no_secret(tmp_path):
    config = _config(tmp_path)
    _install(config)
    _store_secret(config)
    fact = local_fact(config, now=NOW)
    assert fact["error"] is None and fact["schema_version"] == FACT_SCHEMA_VERSION
    assert fact["needs_certificate"] is False and fact["needs_secret_id"] is False
    assert fact["certificate"]["key_matches"] is True
    assert fact["certificate"]["subject"] == "CN=host.example.org"
    assert 19 * 3600 < fact["certificate"]["seconds_left"] <= 20 * 3600
    # renews a third of the 24 h lifetime before it expires
    assert fact["certificate"]["renew_at_epoch"] == fact["certificate"]["not_after_epoch"] - 8 * 3600
    assert fact["secret_id"]["state"] == "ready" and fact["secret_id"]["usable"]
    assert fact["secret_id"]["expires_at_epoch"] == EPOCH + 25 * 3600
    assert fact["status"]["verdict"] == "OK"
    text = json.dumps(fact)
    assert SECRET not in text and "acc-1" not in text and "PRIVATE KEY" not in text


def test_fact_due_certificate_and_missing_secret_id(tmp_path):
    config = _config(tmp_path)
    _install(config, hours_left=2)
    fact = local_fact(config, now=NOW)
    assert fact["needs_certificate"] is True and fact["renewal_due"] is True
    assert fact["needs_secret_id"] is True and fact["secret_id"]["state"] == "missing"


def test_fact_good_certificate_spent_secret_id_needs_only_the_secret_id(tmp_path):
    config = _config(tmp_path)
    _install(config)
    _store_secret(config)
    record = secret_store.load(config["secret_id_store"])
    secret_store.mark(config["secret_id_store"], record, secret_store.CONSUMED)
    fact = local_fact(config, now=NOW)
    assert fact["needs_certificate"] is False and fact["needs_secret_id"] is True
    assert SECRET not in json.dumps(fact)


def test_fact_key_mismatch_is_shown_and_needs_a_certificate(tmp_path):
    config = _config(tmp_path)
    _install(config, key=new_key("ec"), cert_key=new_key("ec"))
    fact = local_fact(config, now=NOW)
    assert fact["certificate"]["key_matches"] is False and fact["needs_certificate"] is True


def test_fact_main_errors_are_one_json_object(tmp_path):
    out = io.StringIO()
    assert fact_main(["--config", str(tmp_path / "absent.json")], stdout=out, now=NOW) == 0
    fact = json.loads(out.getvalue())
    assert fact["schema_version"] == FACT_SCHEMA_VERSION
    assert "Could not read the renewer config" in fact["error"] and "\n" not in fact["error"]
    out = io.StringIO()
    fact_main(["--bogus"], stdout=out, now=NOW)
    assert json.loads(out.getvalue())["error"].startswith("usage: ")


def test_fact_main_reads_the_config(tmp_path):
    config = _config(tmp_path)
    _install(config)
    path = tmp_path / "renewer.json"
    path.write_text(json.dumps(dict((k, v) for k, v in config.items() if v is not None)))
    out = io.StringIO()
    fact_main(["--config", str(path)], stdout=out, now=NOW)
    fact = json.loads(out.getvalue())
    assert fact["error"] is None and fact["request"]["common_name"] == "host.example.org"


# --- the role's decision from it --------------------------------------------------------------------------

def _fact(tmp_path, hours_left=20, secret=True, **extra):
    config = _config(tmp_path, **extra)
    _install(config, hours_left=hours_left)
    if secret:
        _store_secret(config)
    return config, local_fact(config, now=NOW)


def test_plan_nothing_to_do(tmp_path):
    config, fact = _fact(tmp_path)
    plan = fact_plan({"minibus_certs": fact}, _role_request(config), now_epoch=EPOCH + 60)
    assert plan["use_fact"] and plan["needs_issuance"] is False, plan


def test_plan_needs_issuance_for_a_due_certificate_or_a_missing_secret_id(tmp_path):
    config, fact = _fact(tmp_path, hours_left=2)
    plan = fact_plan({"minibus_certs": fact}, _role_request(config), now_epoch=EPOCH)
    assert plan["use_fact"] and plan["needs_certificate"] and plan["needs_issuance"]
    other = tmp_path / "other"
    other.mkdir()
    config, fact = _fact(other, secret=False)
    plan = fact_plan({"minibus_certs": fact}, _role_request(config), now_epoch=EPOCH)
    assert plan["use_fact"] and not plan["needs_certificate"] and plan["needs_secret_id"] and plan["needs_issuance"]


def test_plan_time_moves_on_after_the_fact(tmp_path):
    """A fact taken just before the renewal point or the secret id's expiry is re-read against now."""
    config, fact = _fact(tmp_path, hours_left=8 * 1 + 0.05)  # due 3 minutes after the fact was taken
    plan = fact_plan({"minibus_certs": fact}, _role_request(config), now_epoch=EPOCH)
    assert plan["needs_issuance"] is False
    plan = fact_plan({"minibus_certs": fact}, _role_request(config), now_epoch=EPOCH + 400)
    assert plan["use_fact"] and plan["needs_certificate"], plan
    fact = dict(fact, secret_id=dict(fact["secret_id"], expires_at_epoch=EPOCH + 100))
    plan = fact_plan({"minibus_certs": fact}, _role_request(config), now_epoch=EPOCH + 200)
    assert plan["needs_secret_id"], plan


@pytest.mark.parametrize("change", [
    {"common_name": "other.example.org"}, {"alt_names": ["alias.example.org", "new.example.org"]},
    {"ip_sans": ["10.0.0.1"]}, {"key_type": "rsa", "key_bits": 2048}, {"key_bits": 384},
    {"renew_before": "12h"}, {"cert_path": "/elsewhere/cert.pem"}, {"secret_id_store": None},
    {"owner": "someone-else"},
])
def test_plan_falls_back_when_the_request_differs(tmp_path, change):
    config, fact = _fact(tmp_path)
    plan = fact_plan({"minibus_certs": fact}, dict(_role_request(config), **change), now_epoch=EPOCH)
    assert plan["use_fact"] is False and "differs from this run" in plan["reason"], plan


def test_plan_same_request_spelled_differently_still_matches(tmp_path):
    config, fact = _fact(tmp_path)
    request = dict(_role_request(config), key_bits="256", alt_names=["alias.example.org", "alias.example.org"],
                   ip_sans=["127.000.000.001".replace("000", "0").replace("001", "1")],
                   cert_path=config["cert_path"].replace("/tls/", "/tls/./"))
    plan = fact_plan({"minibus_certs": fact}, request, now_epoch=EPOCH)
    assert plan["use_fact"], plan


@pytest.mark.parametrize("local, why", [
    (None, "not gathered"),
    ({}, "not installed"),
    ({"minibus_certs": "error loading fact - output of running ..."}, "did not answer JSON"),
    ({"minibus_certs": {"schema_version": 2}}, "schema version 2"),
    ({"minibus_certs": {"schema_version": None, "error": "core missing"}}, "schema version None"),
    ({"minibus_certs": {"schema_version": 1, "error": "Could not read the renewer config"}}, "reports an error"),
])
def test_plan_falls_back_without_a_usable_fact(local, why):
    plan = fact_plan(local, {"common_name": "h"}, now_epoch=EPOCH)
    assert plan["use_fact"] is False and why in plan["reason"], plan
    assert plan["needs_issuance"] is None


def test_plan_first_run_with_a_new_account_issues_without_a_plan():
    plan = fact_plan({}, {"common_name": "h"}, now_epoch=EPOCH, account_created=True)
    assert plan["use_fact"] and plan["needs_issuance"] and plan["needs_secret_id"]


@pytest.mark.parametrize("age", [FACT_MAX_AGE_SECONDS + 1, -400])
def test_plan_stale_or_future_fact_falls_back(tmp_path, age):
    config, fact = _fact(tmp_path)
    plan = fact_plan({"minibus_certs": fact}, _role_request(config), now_epoch=EPOCH + age)
    assert plan["use_fact"] is False and "taken" in plan["reason"], plan


def test_plan_truncated_fact_falls_back(tmp_path):
    config, fact = _fact(tmp_path)
    del fact["certificate"]
    plan = fact_plan({"minibus_certs": fact}, _role_request(config), now_epoch=EPOCH)
    assert plan["use_fact"] is False and "lacks a field" in plan["reason"]


def test_plan_bad_request_falls_back():
    fact = {"schema_version": 1, "error": None, "checked_at_epoch": EPOCH, "request": {}}
    plan = fact_plan({"minibus_certs": fact}, {"common_name": "h", "key_type": "dsa"}, now_epoch=EPOCH)
    assert plan["use_fact"] is False and "does not parse" in plan["reason"]
