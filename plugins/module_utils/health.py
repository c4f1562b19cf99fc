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

from . import secret_store
from .files import write_file_atomic

# Nagios plugin exit codes.
OK, WARNING, CRITICAL = 0, 1, 2
_VERDICTS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL"}

STATE_FILE = "renewer-state.json"
METRICS_FILE = "minibus_certs.prom"
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_COUNTERS = ("renewals_total", "failures_total")


def default_paths(params):
    """state_path and metrics_path: given in the config, else next to the secret id store."""
    base = os.path.dirname(params.get("secret_id_store") or params["cert_path"])
    return (params.get("state_path") or os.path.join(base, STATE_FILE),
            params.get("metrics_path") or os.path.join(base, METRICS_FILE))


def read_state(path):
    """The recorded attempts, or an empty record when there is none or it is unreadable."""
    try:
        with open(path, "r") as handle:
            state = json.load(handle)
    except (IOError, OSError, ValueError):
        return {}
    if not isinstance(state, dict):
        return {}
    for name in _COUNTERS:
        if not isinstance(state.get(name), int) or isinstance(state.get(name), bool):
            state[name] = 0
    return state


def record_attempt(path, error=None, issued=False, serial=None, now=None):
    """Add one renewer run to the state file (atomically, 0644: it holds no secret). Returns the state."""
    now = now or _utcnow()
    state = read_state(path)
    for name in _COUNTERS:
        state.setdefault(name, 0)
    stamp = now.strftime(_TIME_FORMAT)
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


def status(plan_result, secret_record, state, now=None, uses_store=True):
    """The health of one host's certificate.

    plan_result: the dict ensure_certificate returns in check mode (serial, not_after, subject, changed,
    reason); secret_record: secret_store.load(); state: read_state(); uses_store: False when the host
    renews with credentials of its own (no secret id store). No secret is copied.
    """
    now = now or _utcnow()
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
    record["code"], record["summary"] = _verdict(record)
    record["verdict"] = _VERDICTS[record["code"]]
    return record


def _verdict(record):
    if not record["not_after"]:
        return CRITICAL, "no certificate installed"
    if not record["seconds_left"]:
        return CRITICAL, "the certificate expired at %s" % record["not_after"]
    if record["last_result"] == "failed":
        return CRITICAL, "the last renewal attempt failed: %s" % record["last_message"]
    if record["secret_id_problem"]:
        return CRITICAL, "no usable secret id: %s" % record["secret_id_problem"]
    if record["renewal_due"]:
        return WARNING, "renewal due: %s" % record["reason"]
    return OK, "certificate valid until %s (%s left)" % (record["not_after"], _human(record["seconds_left"]))


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
    width = max(len(name) for name, _value in rows)
    return "\n".join("%-*s  %s" % (width, name, value) for name, value in rows) + "\n"


def prometheus(record, common_name):
    """node_exporter textfile content. Timestamps in seconds since the epoch, 0 for never."""
    label = '{common_name="%s"}' % common_name.replace("\\", "\\\\").replace('"', '\\"')
    usable = 0 if record["secret_id_problem"] else 1
    metrics = (
        ("certificate_expiry_timestamp_seconds", "gauge", "When the installed certificate expires.",
         _epoch(record["not_after"])),
        ("renewal_due", "gauge", "1 when the certificate is due for renewal.", int(record["renewal_due"])),
        ("last_attempt_timestamp_seconds", "gauge", "When the renewer last ran.", _epoch(record["last_attempt"])),
        ("last_success_timestamp_seconds", "gauge", "When a renewer run last succeeded.",
         _epoch(record["last_success"])),
        ("last_failure_timestamp_seconds", "gauge", "When a renewer run last failed.", _epoch(record["last_failure"])),
        ("last_run_success", "gauge", "1 when the last renewer run succeeded.",
         int(record["last_result"] != "failed")),
        ("secret_id_usable", "gauge", "1 when the stored secret id can be used for the next renewal.", usable),
        ("renewals_total", "counter", "Certificates the renewer installed.", record["renewals_total"]),
        ("failures_total", "counter", "Renewer runs that failed.", record["failures_total"]),
        ("status", "gauge", "Nagios-style status: 0 ok, 1 renewal due, 2 failed/expired/no secret id.",
         record["code"]),
    )
    lines = []
    for name, kind, text, value in metrics:
        lines += ["# HELP minibus_certs_%s %s" % (name, text), "# TYPE minibus_certs_%s %s" % (name, kind),
                  "minibus_certs_%s%s %d" % (name, label, value)]
    return "\n".join(lines) + "\n"


def write_metrics(path, record, common_name):
    write_file_atomic(path, prometheus(record, common_name), mode=0o644)


def _epoch(stamp):
    if not stamp:
        return 0
    try:
        return calendar.timegm(time.strptime(stamp, _TIME_FORMAT))
    except ValueError:
        return 0


def _human(seconds):
    seconds = int(seconds or 0)
    hours, rest = divmod(seconds, 3600)
    return "%dh%02dm" % (hours, rest // 60)


def _utcnow():
    return datetime.datetime.now(datetime.timezone.utc)


def _with_reason(value, reason):
    return "%s (%s)" % (value, reason) if reason else value
