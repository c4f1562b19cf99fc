# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""The Ansible local fact (/etc/ansible/facts.d/minibus_certs.fact, ansible_local.minibus_certs) and the
role's decision from it.

The fact shows what the status record (health.py) reads, as the store's owner when run as root, plus the
request it was taken with; fact_plan (filter minibus.pki.local_fact_plan) decides from it whether a run must
mint a secret id and run the issuance module. No Vault request, no secret, no key material.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import json
import os
import time

from . import certs
from .errors import MinibusError
from .health import TIME_FORMAT, as_owner, observe, epoch_of, utcnow
from .renewer_config import load_config

# Bumped whenever a field the role decides from changes meaning: the role trusts only the version it knows.
FACT_SCHEMA_VERSION = 1
# A fact older than this (a fact cache, a long play) or from the future says nothing about now.
FACT_MAX_AGE_SECONDS = 900
_FACT_CLOCK_SKEW_SECONDS = 300
# The options issuance.plan consults: a fact taken with other values cannot stand in for the module's plan.
_REQUEST_PATHS = ("cert_path", "key_path", "chain_path", "ca_path", "fullchain_path", "secret_id_store")


def request_view(params):
    """The normalised options that decide "needs a certificate / a secret id", for comparing two sources.

    Raises MinibusError for values the module would refuse (the caller then falls back to the module).
    """
    key_type = params.get("key_type") or "ec"
    bits = params.get("key_bits")
    bits = None if bits in (None, "", 0, "0") else int(bits)
    renew_before = params.get("renew_before")
    view = {
        "common_name": str(params.get("common_name") or ""),
        "alt_names": sorted(set(str(n) for n in params.get("alt_names") or [])),
        "ip_sans": sorted(set(_ip_text(i) for i in params.get("ip_sans") or [])),
        "key_type": key_type,
        "key_bits": certs.validate_key(key_type, bits),
        "renew_before_seconds": certs.parse_duration(renew_before, "renew_before") if renew_before else None,
        "owner": str(params["owner"]) if params.get("owner") not in (None, "") else None,
    }
    for name in _REQUEST_PATHS:
        view[name] = os.path.normpath(str(params[name])) if params.get(name) else None
    return view


def _ip_text(value):
    import ipaddress  # pylint: disable=import-outside-toplevel
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise MinibusError("ip_sans entry %r is not an IP address." % (value,))


def _fact_of(p, now):
    """Run as the store's owner: the fact's content (no secret, no key material). p: the prepared request."""
    now = now or utcnow()
    seen = observe(p, now)
    record = seen["status"]
    expires_at = seen["secret_id_expires_at"]
    uses_store = record["secret_id_state"] != "not used"
    return {
        "certificate": {
            "subject": record["subject"], "serial": record["serial"], "not_after": record["not_after"],
            "not_after_epoch": epoch_of(record["not_after"]) or None, "seconds_left": record["seconds_left"],
            "renew_at_epoch": seen["renew_at_epoch"], "key_matches": seen["key_matches"],
        },
        "renewal_due": bool(seen["certificate_due"]),
        "reason": record["reason"],
        "secret_id": {
            "used": uses_store, "state": record["secret_id_state"], "usable": not record["secret_id_problem"],
            "problem": record["secret_id_problem"],
            "expires_at": expires_at if isinstance(expires_at, str) else None,
            "expires_at_epoch": epoch_of(expires_at) or None if isinstance(expires_at, str) else None,
        },
        "status": dict((k, record[k]) for k in (
            "code", "verdict", "summary", "last_attempt", "last_result", "last_success", "last_failure",
            "renewals_total", "failures_total")),
    }


def _fact_base(now):
    return {"schema_version": FACT_SCHEMA_VERSION, "checked_at": now.strftime(TIME_FORMAT),
            "checked_at_epoch": calendar.timegm(now.utctimetuple()), "error": None}


def local_fact(params, now=None):
    """The fact as a dict: never raises, never holds a secret; an error field when something is wrong."""
    now = now or utcnow()
    fact = _fact_base(now)
    try:
        fact["request"] = request_view(params)
        fact.update(as_owner(params, _fact_of, now))
        fact["needs_certificate"] = fact["renewal_due"]
        fact["needs_secret_id"] = fact["secret_id"]["used"] and not fact["secret_id"]["usable"]
    except MinibusError as exc:
        fact = _fact_error(fact, exc.message)
    except Exception as exc:  # pylint: disable=broad-except
        fact = _fact_error(fact, "the status check failed with an unexpected %s (a bug: please report it)"
                           % type(exc).__name__)
    return fact


def _fact_error(fact, message):
    return {"schema_version": fact["schema_version"], "checked_at": fact["checked_at"],
            "checked_at_epoch": fact["checked_at_epoch"], "error": message}


def fact_main(argv, stdout=None, now=None):
    """Entry of the executable local fact: one JSON object on stdout, exit 0, whatever happens."""
    import sys  # pylint: disable=import-outside-toplevel
    stdout = stdout or sys.stdout
    args = {"--config": "/etc/minibus-certs/renewer.json", "--owner": None, "--group": None}
    now = now or utcnow()
    try:
        argv = list(argv)
        while argv:
            name = argv.pop(0)
            if name not in args or not argv:
                raise MinibusError("usage: minibus_certs.fact [--config PATH] [--owner USER] [--group GROUP]")
            args[name] = argv.pop(0)
        # The config is root's file in root's directory: safe for root to read.
        params = load_config(args["--config"])
        params.update(owner=args["--owner"], group=args["--group"])
        fact = local_fact(params, now)
    except MinibusError as exc:
        fact = _fact_error(_fact_base(now), exc.message)
    except Exception as exc:  # pylint: disable=broad-except
        fact = _fact_error(_fact_base(now), "the fact failed with an unexpected %s (a bug: please report it)"
                           % type(exc).__name__)
    stdout.write(json.dumps(fact, sort_keys=True) + "\n")
    stdout.flush()
    return 0


def fact_plan(local_facts, request, now_epoch=None, account_created=False, max_age=FACT_MAX_AGE_SECONDS):
    """Decide from ansible_local whether this run must mint a secret id and run the issuance module.

    local_facts: ansible_local (None when facts were not gathered); request: the options the role is about
    to pass to vault_pki_issue; account_created: the role created the renewal account in this run (so its
    store cannot hold anything yet). Returns use_fact (False: run the module's check-mode plan instead),
    needs_certificate, needs_secret_id, needs_issuance and reason.
    """
    now_epoch = time.time() if now_epoch is None else now_epoch

    def fallback(why):
        return {"use_fact": False, "needs_certificate": None, "needs_secret_id": None, "needs_issuance": None,
                "reason": "no decision from the local fact: %s" % why}

    def decided(cert, secret, reason):
        return {"use_fact": True, "needs_certificate": cert, "needs_secret_id": secret,
                "needs_issuance": cert or secret, "reason": reason}

    if not isinstance(local_facts, dict):
        return fallback("local facts were not gathered")
    fact = local_facts.get("minibus_certs")
    if fact is None:
        if account_created:
            return decided(True, True, "the renewal account was created in this run: nothing can be in its store yet")
        return fallback("the local fact is not installed (first run of this role version, or another fact_path)")
    if not isinstance(fact, dict):
        return fallback("the local fact did not answer JSON")
    if fact.get("schema_version") != FACT_SCHEMA_VERSION:
        return fallback("the local fact has schema version %r, not %d" % (fact.get("schema_version"),
                                                                          FACT_SCHEMA_VERSION))
    if fact.get("error"):
        return fallback("the local fact reports an error: %s" % fact["error"])
    checked = fact.get("checked_at_epoch")
    if not isinstance(checked, int) or isinstance(checked, bool):
        return fallback("the local fact has no check time")
    if now_epoch - checked > max_age or checked - now_epoch > _FACT_CLOCK_SKEW_SECONDS:
        return fallback("the local fact was taken %ds ago (cached facts, or clocks apart), more than %ds"
                        % (now_epoch - checked, max_age))
    try:
        wanted = request_view(request)
    except (MinibusError, ValueError, TypeError) as exc:
        return fallback("the role's request does not parse (%s)" % getattr(exc, "message", exc))
    seen = fact.get("request")
    if not isinstance(seen, dict):
        return fallback("the local fact shows no request")
    differ = sorted(k for k in wanted if seen.get(k) != wanted[k])
    if differ:
        return fallback("the host's renewer config differs from this run in %s" % ", ".join(differ))
    try:
        cert, secret = fact["certificate"], fact["secret_id"]
        needs_cert = bool(fact["needs_certificate"])
        needs_secret = bool(fact["needs_secret_id"])
        reasons = [fact["reason"]] if (needs_cert or needs_secret) and fact.get("reason") else []
        if not needs_cert and (not isinstance(cert.get("renew_at_epoch"), int) or now_epoch >= cert["renew_at_epoch"]):
            needs_cert = True
            reasons.append("the certificate is due for renewal by now")
        expiry = secret.get("expires_at_epoch")
        if secret.get("used") and not needs_secret and isinstance(expiry, int) and now_epoch >= expiry:
            needs_secret = True
            reasons.append("the stored secret id has expired by now")
    except (KeyError, TypeError, AttributeError):
        return fallback("the local fact lacks a field this role decides from")
    if not (needs_cert or needs_secret):
        return decided(False, False, "nothing to do: %s" % (fact.get("reason") or "certificate and secret id good"))
    return decided(needs_cert, needs_secret, "; ".join(reasons))
