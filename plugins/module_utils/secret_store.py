# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""The renewal account's secret id file: JSON, mode 0600, replaced atomically.

States: ``ready`` (usable), ``in-use`` (a login with it was started; if that run died, the id may be
spent), ``consumed`` (Vault refused it). Missing, consumed or expired means the host must be
re-bootstrapped with a new wrapped secret id by the next Ansible run.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json

from .files import MAX_JSON_BYTES, read_bounded, write_file_atomic

READY, IN_USE, CONSUMED = "ready", "in-use", "consumed"


def load(path):
    """The stored record, or None when there is no file."""
    data = read_bounded(path, MAX_JSON_BYTES, "secret id store", missing_ok=True)
    if data is None:
        return None
    try:
        record = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError):  # not UTF-8, not JSON, or nested too deep to parse
        return {"state": CONSUMED, "problem": "the file is not valid JSON"}
    if not isinstance(record, dict) or not record.get("secret_id"):
        return {"state": CONSUMED, "problem": "the file holds no secret id"}
    if not isinstance(record["secret_id"], str) or record.get("state") not in (READY, IN_USE, CONSUMED):
        return {"state": CONSUMED, "problem": "the file is not a secret id store this module wrote"}
    if record.get("expires_at") is not None and _expiry(record["expires_at"]) is None:
        return {"state": CONSUMED, "problem": "the file's expires_at %r is not a UTC time" % (record["expires_at"],)}
    return record


def _expiry(value):
    try:
        return datetime.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    except (TypeError, ValueError):
        return None


def save(path, secret_id, accessor=None, ttl_seconds=None, uid=-1, gid=-1, now=None, vault_index=None):
    """vault_index: the storage index Vault answered with once the secret id existed (X-Vault-Index), so the
    next login is not refused by a standby that has not caught up."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    record = {"secret_id": secret_id, "accessor": accessor, "state": READY,
              "stored_at": now.strftime("%Y-%m-%dT%H:%M:%SZ")}
    if vault_index:
        record["vault_index"] = vault_index
    if ttl_seconds:
        record["expires_at"] = (now + datetime.timedelta(seconds=int(ttl_seconds))).strftime("%Y-%m-%dT%H:%M:%SZ")
    write_file_atomic(path, json.dumps(record, sort_keys=True), mode=0o600, uid=uid, gid=gid)
    return record


def mark(path, record, state, uid=-1, gid=-1):
    record = dict(record, state=state)
    write_file_atomic(path, json.dumps(record, sort_keys=True), mode=0o600, uid=uid, gid=gid)
    return record


def problem(record, now=None):
    """Why the stored secret id cannot be used (a sentence fragment), or None when it can."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    if record is None:
        return "there is no stored secret id"
    if record.get("problem"):
        return record["problem"]
    if record.get("state") == CONSUMED:
        return "the stored secret id was spent or refused"
    expires_at = record.get("expires_at")
    if expires_at is not None:
        expiry = _expiry(expires_at)
        if expiry is None:
            return "the stored expires_at is not a UTC time"
        if expiry <= now:
            return "the stored secret id expired at %s" % expires_at
    return None
