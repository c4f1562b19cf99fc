# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The local fact run as root never reads what the renewal account points it at.

As root, with a throw-away system account standing in for minibus-certs: the role's fact template
(roles/minibus_certs/templates/minibus_certs.fact.j2) is rendered against a library laid out as the role
installs it (minibus_pki/ = plugins/module_utils), the account's store holds a certificate, a key and a
secret id, and the account then replaces names in its store by symlinks to root-only files holding a
valid-looking secret id store and certificate. The fact, run as root like Ansible's fact gathering runs
it, must print one JSON object, never their content, never report them as the host's, and change nothing.
"""

from __future__ import absolute_import, division, print_function

import os
import shutil

import pytest

from labs.hosts import FACT_ROOT_SECRET as ROOT_SECRET, FactHost, throwaway_account

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                                reason="needs root and useradd")


@pytest.fixture(scope="module")
def account():
    with throwaway_account("mbf1") as entry:
        yield entry


@pytest.fixture
def host(account):
    h = FactHost(account)
    yield h
    shutil.rmtree(h.base, ignore_errors=True)


def _assert_not_leaked(out, host):
    assert ROOT_SECRET not in out and "root-only.example.org" not in out and "PRIVATE KEY" not in out
    assert "s.the-accounts-own-secret-id" not in out and "Traceback" not in out


def test_the_fact_shows_the_accounts_store(host):
    """The control: untouched, the fact reads the account's store and sees a good certificate and secret id."""
    out, fact = host.run()
    assert fact["error"] is None, fact
    assert fact["certificate"]["subject"] == "CN=host.example.org" and fact["certificate"]["key_matches"] is True
    assert fact["secret_id"]["usable"] and fact["needs_certificate"] is False and fact["needs_secret_id"] is False
    _assert_not_leaked(out, host)


@pytest.mark.parametrize("planted, target", [
    ("state/secret-id.json", "root_secret"),
    ("state/renewer-state.json", "root_state"),
    ("tls/cert.pem", "root_cert"),
    ("tls/key.pem", "root_key"),
])
def test_planted_symlinks_to_root_only_files_are_never_read(host, planted, target):
    before = host.root_files()
    host.plant(os.path.join(host.base, "store", planted), getattr(host, target))
    out, fact = host.run()
    _assert_not_leaked(out, host)
    assert host.root_files() == before
    if fact["error"] is None:
        # Root's look-alike files never count as the host's: read as the account, they cannot be opened.
        assert fact["certificate"]["subject"] != "CN=root-only.example.org"
        assert fact["status"]["renewals_total"] != 7
        if planted == "state/secret-id.json":
            assert not fact["secret_id"]["usable"] and fact["needs_secret_id"]
        if planted.startswith("tls/"):
            assert fact["needs_certificate"]
    else:
        assert "\n" not in fact["error"]


def test_a_planted_state_directory_link_is_not_followed(host):
    """The account cannot replace its directory (its parent is root's); root's run without --owner refuses it."""
    before = host.root_files()
    shutil.rmtree(host.state)
    host.plant(host.state, host.root_only)  # as if the parent let it
    out, fact = host.run()
    _assert_not_leaked(out, host)
    assert host.root_files() == before
    assert fact["error"] or not fact["secret_id"]["usable"]


def test_root_without_an_owner_refuses_the_accounts_store(host):
    with open(host.fact) as handle:
        text = handle.read()
    text = text.replace('"--owner", "%s", "--group", "%s"' % ((host.account.pw_name,) * 2), "")
    bare = os.path.join(host.base, "bare.fact")
    with open(bare, "w") as handle:
        handle.write(text)
    host.plant(host.secret, host.root_secret)
    out, fact = host.run(bare)
    _assert_not_leaked(out, host)
    assert fact["error"] and "belongs to uid %d" % host.account.pw_uid in fact["error"], fact


def test_a_missing_core_is_one_json_error(host):
    shutil.rmtree(os.path.join(host.lib, "minibus_pki"))
    out, fact = host.run()
    assert fact["error"] and "cannot be loaded" in fact["error"] and fact["schema_version"] is None
