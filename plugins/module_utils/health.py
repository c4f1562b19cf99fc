# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""Certificate health for operators: one status record, shown as a table, JSON, a Nagios exit code
and a Prometheus textfile (node_exporter's textfile collector).

The renewer records every attempt in a small state file next to the secret id store (no secret in
it); the status adds what the store shows now (certificate, secret id state). Reading the status
makes no Vault request.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import calendar
import datetime
import json
import os
import time

from . import _privdrop, certs, issuance, secret_store
from .errors import MinibusError
from .files import MAX_JSON_BYTES, CertStore, read_bounded, write_file_atomic

# Nagios plugin exit codes.
OK, WARNING, CRITICAL = 0, 1, 2
_VERDICTS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL"}

STATE_FILE = "renewer-state.json"
METRICS_FILE = "minibus_certs.prom"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_COUNTERS = ("renewals_total", "failures_total")


def default_paths(params):
    """state_path and metrics_path: given in the config, else next to the secret id store."""
    base = os.path.dirname(params.get("secret_id_store") or params["cert_path"])
    return (params.get("state_path") or os.path.join(base, STATE_FILE),
            params.get("metrics_path") or os.path.join(base, METRICS_FILE))


def read_state(path):
    """The recorded attempts, or an empty record when there is none or it is unreadable."""
    try:
        state = json.loads((read_bounded(path, MAX_JSON_BYTES, "renewer state file", missing_ok=True)
                            or b"{}").decode("utf-8"))
    except (MinibusError, ValueError, RecursionError):
        return {}
    if not isinstance(state, dict):
        return {}
    for name in _COUNTERS:
        if not isinstance(state.get(name), int) or isinstance(state.get(name), bool):
            state[name] = 0
    return state


def record_attempt(path, error=None, issued=False, serial=None, now=None):
    """Add one renewer run to the state file (atomically, 0644: it holds no secret). Returns the state."""
    now = now or utcnow()
    state = read_state(path)
    for name in _COUNTERS:
        state.setdefault(name, 0)
    stamp = now.strftime(TIME_FORMAT)
    state["last_attempt"] = stamp
    if error is None:
        state["last_result"] = "ok"
        state["last_message"] = "renewed: serial %s" % serial if issued else "nothing to do"
        state["last_success"] = stamp
        if issued:
            state["renewals_total"] += 1
            state["last_renewal"] = stamp
    else:
        state["last_result"] = "failed"
        state["last_message"] = error
        state["last_failure"] = stamp
        state["failures_total"] += 1
    write_file_atomic(path, json.dumps(state, sort_keys=True) + "\n", mode=0o644)
    return state


def collect(params, now=None):
    """The status record of the host whose options are params (the renewer's config), no Vault request.

    Root with an owner set reads nothing itself: the whole look at the store (certificate, key, secret id
    store, state file) runs in a child that has become the owner for good (_privdrop), so a link the account
    planted cannot make root open a file of root's. Root without an owner works only on a root-owned store
    (issuance.plan refuses any other).
    """
    return as_owner(params, observe, now)["status"]


def as_owner(params, func, now):
    # The module's defaults for options the caller left out (the renewer's load_config does the same).
    params = dict(dict((k, o.get("default")) for k, o in issuance.CERTIFICATE_SPEC.items()), **dict(
        (k, v) for k, v in params.items() if v is not None))
    p = issuance.prepare(params, check_mode=True)
    if p.drop_ids is not None:
        return _privdrop.run_as(p.drop_ids[0], p.drop_ids[1], func,
                                p.replace(owner=None, group=None, uid=-1, gid=-1, drop_ids=None), now,
                                deadline_seconds=_privdrop.DEFAULT_DEADLINE_SECONDS, work="the status check")
    return func(p, now)


def observe(p, now):
    """Everything the status and the local fact show, read by the store's owner (or root on root's store).

    p: the prepared request (issuance.prepare)."""
    now = now or utcnow()
    decision, secret_problem = issuance.plan(p, now)
    planned = issuance.plan_result(decision, secret_problem)
    record = None
    if p.get("secret_id_store"):
        try:
            record = secret_store.load(p["secret_id_store"])
        except MinibusError:
            record = {"state": secret_store.CONSUMED, "problem": "the secret id store is unreadable"}
    state_path, _metrics_path = default_paths(p)
    record_status = status(planned, record, read_state(state_path), now, uses_store=bool(p.get("secret_id_store")))
    current = decision.current or {}
    renew_at = None
    if current:
        threshold = p["renew_before_seconds"]
        if threshold is None:
            threshold = current["lifetime_seconds"] // 3
        renew_at = epoch_of(current["not_after"]) - threshold
    return {"status": record_status, "certificate_due": decision.needed, "renew_at_epoch": renew_at, "key_matches": _key_matches(p),
            "secret_id_expires_at": (record or {}).get("expires_at") if isinstance(record, dict) else None}


def _key_matches(p):
    """True/False when both files are there, None when one is missing or unreadable (no key material kept)."""
    content = CertStore(p["cert_path"], p["key_path"]).read()
    if not content.get("cert") or not content.get("key"):
        return None
    try:
        return certs.key_matches(certs.load_certificate(content["cert"]), certs.load_private_key(content["key"]))
    except (ValueError, TypeError, UnicodeError):
        return None


def status(plan_result, secret_record, state, now=None, uses_store=True):
    """The health of one host's certificate.

    plan_result: the dict ensure_certificate returns in check mode (serial, not_after, subject, changed,
    reason); secret_record: secret_store.load(); state: read_state(); uses_store: False when the host
    renews with credentials of its own (no secret id store). No secret is copied.
    """
    now = now or utcnow()
    secret_problem = None
    if not uses_store:
        secret_state = "not used"
    else:
        try:
            secret_problem = secret_store.problem(secret_record, now)
        except (ValueError, TypeError, AttributeError):
            secret_problem = "the secret id store is malformed"
        secret_state = "missing" if secret_record is None else (
            "unusable" if secret_problem else str(secret_record.get("state") or "ready"))
    expires = plan_result.get("not_after")
    seconds_left = int(plan_result.get("seconds_remaining") or 0) if expires else None
    record = {
        "subject": plan_result.get("subject"),
        "issuer": plan_result.get("issuer"),
        "authority_key_id": plan_result.get("authority_key_id"),
        "serial": plan_result.get("serial"),
        "not_after": expires,
        "seconds_left": seconds_left,
        "renewal_due": bool(plan_result.get("changed")),
        "reason": plan_result.get("reason"),
        "secret_id_state": secret_state,
        "secret_id_problem": secret_problem,
        "last_attempt": state.get("last_attempt"),
        "last_result": state.get("last_result"),
        "last_message": state.get("last_message"),
        "last_success": state.get("last_success"),
        "last_failure": state.get("last_failure"),
        "renewals_total": state.get("renewals_total", 0),
        "failures_total": state.get("failures_total", 0),
    }
    record["state"], record["summary"] = _verdict(record)
    record["code"] = _STATE_CODES[record["state"]]
    record["verdict"] = _VERDICTS[record["code"]]
    return record


# The record's state, first match wins (the order _verdict checks them), and its Nagios code.
STATES = ("no_certificate", "expired", "renewal_failed", "no_secret_id", "renewal_due", "ok")
_STATE_CODES = {"no_certificate": CRITICAL, "expired": CRITICAL, "renewal_failed": CRITICAL,
                "no_secret_id": CRITICAL, "renewal_due": WARNING, "ok": OK}


def _verdict(record):
    if not record["not_after"]:
        return "no_certificate", "no certificate installed"
    if not record["seconds_left"]:
        return "expired", "the certificate expired at %s" % record["not_after"]
    if record["last_result"] == "failed":
        return "renewal_failed", "the last renewal attempt failed: %s" % record["last_message"]
    if record["secret_id_problem"]:
        return "no_secret_id", "no usable secret id: %s" % record["secret_id_problem"]
    if record["renewal_due"]:
        return "renewal_due", "renewal due: %s" % record["reason"]
    return "ok", "certificate valid until %s (%s left)" % (record["not_after"], _human(record["seconds_left"]))


def nagios_line(record):
    """One line in the Nagios plugin format, with perfdata."""
    return "MINIBUS CERT %s - %s | seconds_left=%d;;;0 renewals=%dc failures=%dc" % (
        record["verdict"], record["summary"], record["seconds_left"] or 0, record["renewals_total"],
        record["failures_total"])


def table(record):
    """A human table, one field a line."""
    rows = [
        ("status", "%s: %s" % (record["verdict"], record["summary"])),
        ("subject", record["subject"] or "-"),
        ("issuer", _with_reason(record.get("issuer") or "-", record.get("authority_key_id") and
                                "key id %s" % record["authority_key_id"])),
        ("serial", record["serial"] or "-"),
        ("not after", record["not_after"] or "-"),
        ("time left", _human(record["seconds_left"]) if record["not_after"] else "-"),
        ("renewal due", "yes (%s)" % record["reason"] if record["renewal_due"] else "no"),
        ("secret id", _with_reason(record["secret_id_state"], record["secret_id_problem"])),
        ("last attempt", "%s %s" % (record["last_attempt"], record["last_result"]) if record["last_attempt"]
         else "never"),
        ("last message", record["last_message"] or "-"),
        ("last success", record["last_success"] or "never"),
        ("renewals", str(record["renewals_total"])),
        ("failures", str(record["failures_total"])),
    ]
    if record.get("outage_budget"):
        rows.append(("vault outage", record["outage_budget"]))
    width = max(len(name) for name, _value in rows)
    return "\n".join("%-*s  %s" % (width, name, value) for name, value in rows) + "\n"


def prometheus(record, common_name):
    """node_exporter textfile content (text exposition format 0.0.4). Timestamps in seconds since the epoch, 0 for never.

    Every sample carries common_name. minibus_certs_state is a state set (one sample per STATES entry, exactly
    one of them 1); minibus_certs_certificate_info (value 1) names the installed certificate's issuer and serial,
    and is left out while no certificate is installed.
    """
    host = (("common_name", common_name),)
    usable = 0 if record["secret_id_problem"] else 1
    gauges = (
        ("certificate_expiry_timestamp_seconds", "gauge", "When the installed certificate expires (0: none installed).",
         epoch_of(record["not_after"])),
        ("renewal_due", "gauge", "1 when the certificate is due for renewal.", int(record["renewal_due"])),
        ("last_attempt_timestamp_seconds", "gauge", "When the renewer last ran (0: never).",
         epoch_of(record["last_attempt"])),
        ("last_success_timestamp_seconds", "gauge", "When a renewer run last succeeded (0: never).",
         epoch_of(record["last_success"])),
        ("last_failure_timestamp_seconds", "gauge", "When a renewer run last failed (0: never).",
         epoch_of(record["last_failure"])),
        ("last_run_success", "gauge", "1 when the last renewer run succeeded.",
         int(record["last_result"] != "failed")),
        ("secret_id_usable", "gauge", "1 when the stored secret id can be used for the next renewal.", usable),
        ("renewals_total", "counter", "Certificates the renewer installed.", record["renewals_total"]),
        ("failures_total", "counter", "Renewer runs that failed.", record["failures_total"]),
        ("status", "gauge", "Nagios-style status: 0 ok, 1 renewal due, 2 failed/expired/no secret id.",
         record["code"]),
    )
    if record.get("outage_budget_seconds") is not None:
        gauges += (("outage_budget_seconds", "gauge",
                    "The longest Vault outage this configuration survives without an expired certificate.",
                    record["outage_budget_seconds"]),)
    series = [(name, kind, text, [(host, value)]) for name, kind, text, value in gauges]
    series.append(("state", "gauge", "The certificate's state (" + ", ".join(STATES) + "): 1 for the current one.",
                   [(host + (("state", state),), int(record["state"] == state)) for state in STATES]))
    info = []
    if record["not_after"]:
        info = [(host + (("issuer", record.get("issuer") or ""), ("authority_key_id", record.get("authority_key_id") or ""),
                         ("serial", record.get("serial") or "")), 1)]
    series.append(("certificate_info", "gauge", "The installed certificate: its issuing CA (subject and key id) "
                   "and serial.", info))
    lines = []
    for name, kind, text, samples in series:
        lines += ["# HELP minibus_certs_%s %s" % (name, text), "# TYPE minibus_certs_%s %s" % (name, kind)]
        for labels, value in samples:
            label_text = ",".join('%s="%s"' % (k, _label_value(v)) for k, v in labels)
            lines.append("minibus_certs_%s{%s} %d" % (name, label_text, int(value)))
    return "\n".join(lines) + "\n"


def _label_value(text):
    """A label value as the exposition format wants it: backslash, double quote and line feed escaped."""
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def write_metrics(path, record, common_name):
    write_file_atomic(path, prometheus(record, common_name), mode=0o644)


def epoch_of(stamp):
    if not stamp:
        return 0
    try:
        return calendar.timegm(time.strptime(stamp, TIME_FORMAT))
    except ValueError:
        return 0


def _human(seconds):
    seconds = int(seconds or 0)
    hours, rest = divmod(seconds, 3600)
    return "%dh%02dm" % (hours, rest // 60)


def utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def _with_reason(value, reason):
    return "%s (%s)" % (value, reason) if reason else value
