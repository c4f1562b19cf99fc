# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""publish.py's pure rules: the config section, and when a tcp host's rsyslog is restarted (the whole
publish, as root against a real store and rsyslogd, is tests/reliability/test_publish.py)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import publish
from ansible_collections.minibus.pki.plugins.module_utils.errors import InvalidInput

from pki_test_helpers import key_pem, make_cert, new_key


@pytest.mark.parametrize("section, words", [
    (None, "no publish section"),
    ({"dir": "relative", "key_usage": "clientAuth"}, "absolute path"),
    ({"dir": "/p", "key_usage": "anyExtendedKeyUsage"}, "serverAuth"),
    ({"dir": "/p", "key_usage": "clientAuth", "metrics_path": "x.prom"}, "metrics_path"),
    ({"dir": "/p", "key_usage": "clientAuth", "restart": True}, "unknown keys restart"),
])
def test_a_bad_publish_section_is_one_sentence(section, words):
    with pytest.raises(InvalidInput) as caught:
        publish.settings({"publish": section})
    assert words in caught.value.message and "nothing was published" in caught.value.message


def test_restart_only_true_is_true():
    assert publish.settings({"publish": {"dir": "/p", "key_usage": "serverAuth"}})["restart_rsyslog"] is False
    assert publish.settings({"publish": {"dir": "/p", "key_usage": "serverAuth", "restart_rsyslog": "yes"}})[
        "restart_rsyslog"] is False


def _install(store, serial):
    key = new_key()
    cert = make_cert(key)
    store.install({"cert": cert, "key": key_pem(key), "chain": cert, "fullchain": cert}, serial)


def test_a_new_set_restarts_once_and_at_most_every_ten_minutes(tmp_path):
    directory = str(tmp_path)
    store = publish.published_store(directory)
    calls = []

    def restart():
        calls.append(1)

    def run():
        result = {"restarted": False, "restart_pending": False, "warnings": []}
        publish._restart_when_due(store, directory, restart, result)  # pylint: disable=protected-access
        return result

    _install(store, "01")
    assert run()["restarted"] and len(calls) == 1
    assert not run()["restarted"] and not run()["restart_pending"] and len(calls) == 1  # same set: nothing
    _install(store, "02")
    assert run()["restart_pending"] and len(calls) == 1  # a new set within 10 minutes waits
    stamp = os.path.join(directory, publish.RESTART_STAMP)
    old = os.stat(stamp).st_mtime - publish.RESTART_INTERVAL_SECONDS - 1
    os.utime(stamp, (old, old))
    assert run()["restarted"] and len(calls) == 2  # a later publish does the pending restart


def test_a_failed_restart_stays_pending(tmp_path):
    directory = str(tmp_path)
    store = publish.published_store(directory)
    _install(store, "01")
    result = {"restarted": False, "restart_pending": False, "warnings": []}
    publish._restart_when_due(store, directory, lambda: "systemctl exited 1", result)  # pylint: disable=protected-access
    assert result["restart_pending"] and not result["restarted"] and "not restarted" in result["warnings"][0]
    assert not os.path.exists(os.path.join(directory, publish.RESTART_STAMP))
