# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import stat

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import secret_store

UTC = datetime.timezone.utc
T0 = datetime.datetime(2030, 1, 1, 0, 0, 0, tzinfo=UTC)
SECRET = "3f1c0d2e-secret-id-value"


def test_save_and_load(tmp_path):
    path = str(tmp_path / "secret-id.json")
    record = secret_store.save(path, SECRET, accessor="acc-1", ttl_seconds=3600, now=T0)
    assert record == {"secret_id": SECRET, "accessor": "acc-1", "state": "ready",
                      "stored_at": "2030-01-01T00:00:00Z", "expires_at": "2030-01-01T01:00:00Z"}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert secret_store.load(path) == record
    assert json.loads(open(path).read()) == record
    assert os.listdir(str(tmp_path)) == ["secret-id.json"]


def test_the_storage_index_is_kept_with_the_secret_id_and_survives_marking(tmp_path):
    path = str(tmp_path / "s.json")
    record = secret_store.save(path, SECRET, now=T0, vault_index="eyJ2YWx1ZSI6IjM0In0=")
    assert secret_store.load(path)["vault_index"] == "eyJ2YWx1ZSI6IjM0In0="
    secret_store.mark(path, record, secret_store.IN_USE)
    assert secret_store.load(path)["vault_index"] == "eyJ2YWx1ZSI6IjM0In0="
    assert "vault_index" not in secret_store.save(path, SECRET, now=T0)


def test_save_without_ttl_never_expires(tmp_path):
    path = str(tmp_path / "s.json")
    record = secret_store.save(path, SECRET, now=T0)
    assert "expires_at" not in record
    assert secret_store.problem(record, now=T0 + datetime.timedelta(days=3650)) is None


def test_mark(tmp_path):
    path = str(tmp_path / "s.json")
    record = secret_store.save(path, SECRET, ttl_seconds=60, now=T0)
    marked = secret_store.mark(path, record, secret_store.IN_USE)
    assert marked["state"] == "in-use" and record["state"] == "ready"  # the caller's dict is not changed
    assert secret_store.load(path)["state"] == "in-use"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    secret_store.mark(path, marked, secret_store.CONSUMED)
    loaded = secret_store.load(path)
    assert loaded["state"] == "consumed" and loaded["secret_id"] == SECRET
    assert secret_store.problem(loaded, now=T0) == "the stored secret id was spent or refused"


def test_problem_missing(tmp_path):
    record = secret_store.load(str(tmp_path / "nope.json"))
    assert record is None
    assert secret_store.problem(record) == "there is no stored secret id"


def test_problem_expired(tmp_path):
    path = str(tmp_path / "s.json")
    record = secret_store.save(path, SECRET, ttl_seconds=3600, now=T0)
    assert secret_store.problem(record, now=T0 + datetime.timedelta(minutes=59)) is None
    assert secret_store.problem(record, now=T0 + datetime.timedelta(hours=1)) == \
        "the stored secret id expired at 2030-01-01T01:00:00Z"


def test_problem_not_json(tmp_path):
    path = tmp_path / "s.json"
    path.write_text("{not json")
    record = secret_store.load(str(path))
    assert record["state"] == "consumed"
    assert secret_store.problem(record) == "the file is not valid JSON"


def test_problem_no_secret_id(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"state": "ready"}))
    assert secret_store.problem(secret_store.load(str(path))) == "the file holds no secret id"
    path.write_text(json.dumps(["x"]))
    assert secret_store.problem(secret_store.load(str(path))) == "the file holds no secret id"


def test_ready_is_usable(tmp_path):
    record = secret_store.save(str(tmp_path / "s.json"), SECRET, now=T0)
    assert secret_store.problem(record, now=T0) is None


@pytest.mark.parametrize("content", [
    '{"secret_id": "x", "state": "ready", "expires_at": "tomorrow"}',
    '{"secret_id": "x", "state": "ready", "expires_at": 12}',
    '{"secret_id": ["x"], "state": "ready"}',
    '{"secret_id": "x", "state": "who knows"}',
    '[1, 2]',
    'not json at all',
    '"just a string"',
])
def test_malformed_store_is_unusable_never_a_crash(tmp_path, content):
    path = tmp_path / "s.json"
    path.write_text(content)
    record = secret_store.load(str(path))
    problem = secret_store.problem(record, now=T0)
    assert problem and "\n" not in problem and "x" != problem


def test_problem_of_a_record_with_a_bad_expiry():
    assert secret_store.problem({"secret_id": "x", "state": "ready", "expires_at": "tomorrow"}, now=T0) \
        == "the stored expires_at is not a UTC time"
