# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The core's own proof that root never follows what the renewal account plants in its store.

As root, with a throw-away system account standing in for minibus-certs: a store is bootstrapped with
ensure_certificate(owner=account) against the real dev OpenBao, then every name the account can replace
in it is replaced by a symlink (to a root-owned file, to a root-owned directory, dangling into a
root-only directory) and ensure_certificate runs again as root with owner set. Nothing outside the
store may change owner, mode or content, and nothing may be created there. (The sweep over every
writable path of a role-built host is the role's test.)
"""

from __future__ import absolute_import, division, print_function

import os
import shutil
import stat
import tempfile

import pytest
import requests

from labs.hosts import host_params, paths, store_record, throwaway_account
from ansible_collections.minibus.pki.plugins.module_utils import issuance
from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                                reason="needs root and useradd")


@pytest.fixture(scope="module")
def account():
    with throwaway_account("mbh1") as entry:
        yield entry


@pytest.fixture(scope="module")
def anchor(vault):
    """The dev PKI's root CA, pinned as the trust anchor (world-readable, as the role installs it)."""
    directory = tempfile.mkdtemp(prefix="minibus-anchor-")
    os.chmod(directory, 0o755)
    path = os.path.join(directory, "root.pem")
    with open(path, "w") as handle:
        handle.write(requests.get(vault.url + "/v1/pki/ca/pem", timeout=10, verify=vault.ca_cert).text.strip() + "\n")
    os.chmod(path, 0o644)
    yield path
    shutil.rmtree(directory, ignore_errors=True)


def _snapshot(directory):
    """Owner, group, mode, link target and content of everything under directory (following nothing)."""
    seen = {}
    for root, dirs, files in os.walk(directory):
        for name in sorted(dirs + files) + ["."]:
            path = os.path.normpath(os.path.join(root, name))
            st = os.lstat(path)
            entry = [st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode), stat.S_IFMT(st.st_mode)]
            if stat.S_ISLNK(st.st_mode):
                entry.append(os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    entry.append(handle.read())
            seen[os.path.relpath(path, directory)] = entry
    return seen


class Host(object):
    """base/ (root 0755): host/ (the account's: tls/, secret-id.json) and root-only things to aim at."""

    def __init__(self, vault, account, anchor):
        self.base = tempfile.mkdtemp(prefix="minibus-privdrop-")
        os.chmod(self.base, 0o755)
        self.host = os.path.join(self.base, "host")
        os.makedirs(os.path.join(self.host, "tls"))
        for d in (self.host, os.path.join(self.host, "tls")):
            os.chown(d, account.pw_uid, account.pw_gid)
            os.chmod(d, 0o700)
        self.root_only = os.path.join(self.base, "root-only")  # root 0700, with a secret
        os.mkdir(self.root_only, 0o700)
        self.root_file = os.path.join(self.root_only, "shadow")
        with open(self.root_file, "w") as handle:
            handle.write("root:secret\n")
        os.chmod(self.root_file, 0o600)
        self.root_dir = os.path.join(self.base, "etc")  # a root-owned directory others can read
        os.mkdir(self.root_dir, 0o755)
        with open(os.path.join(self.root_dir, "passwd"), "w") as handle:
            handle.write("root:x:0:0\n")
        self.account = account
        # Vault's TLS CA where the role puts it: readable by the account.
        self.ca_cert = os.path.join(self.base, "vault-ca.pem")
        shutil.copyfile(vault.ca_cert, self.ca_cert)
        os.chmod(self.ca_cert, 0o644)
        self.params = dict(host_params(vault, self.host), owner=account.pw_name, trust_anchor_path=anchor,
                           ca_cert=self.ca_cert,
                           fullchain_path=os.path.join(self.host, "tls", "fullchain.pem"),
                           allow_insecure_http=vault.url.startswith("http://"))
        self.vault = vault

    def outside(self):
        return dict((k, v) for k, v in _snapshot(self.base).items() if not k.startswith("host"))

    def run(self, **overrides):
        return issuance.ensure_certificate(dict(self.params, **overrides))

    def bootstrap(self):
        return self.run(secret_id_wrapping_token=self.vault.mint_wrapped())

    def cleanup(self):
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def host(vault, account, anchor):
    h = Host(vault, account, anchor)
    yield h
    h.cleanup()


def test_root_with_owner_works_as_the_owner(host):
    result = host.bootstrap()
    assert result["issued"] and result["secret_id_rotated"] and result["privileges_dropped"]
    assert not any("not pinned" in w for w in result["warnings"])
    uid, gid = host.account.pw_uid, host.account.pw_gid
    for root, dirs, files in os.walk(host.host):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            assert (st.st_uid, st.st_gid) == (uid, gid), os.path.join(root, name)
    p = paths(host.host)
    with open(p["ca_path"]) as handle, open(host.params["trust_anchor_path"]) as anchor_file:
        assert handle.read() == anchor_file.read()  # ca.pem is the pinned anchor, not the answer's CA
    with open(host.params["fullchain_path"]) as handle:
        assert handle.read().count("BEGIN CERTIFICATE") == 2  # certificate + intermediate, no root
    assert store_record(host.host)["state"] == "ready"
    # The renewal works as the owner from its stored secret id too.
    again = host.run(force=True)
    assert again["issued"] and again["privileges_dropped"]


def test_missing_cert_dir_is_one_sentence(host):
    shutil.rmtree(os.path.join(host.host, "tls"))
    before = host.outside()
    with pytest.raises(MinibusError) as info:
        host.bootstrap()
    assert "does not exist: create it owned by %s" % host.account.pw_name in info.value.message
    assert host.outside() == before


def test_a_ca_cert_the_owner_cannot_read_is_one_sentence(host):
    os.chmod(host.ca_cert, 0o600)
    with pytest.raises(MinibusError) as info:
        host.bootstrap()
    assert "ca_cert %s cannot be read by uid %d" % (host.ca_cert, host.account.pw_uid) in info.value.message


def test_root_without_owner_refuses_the_accounts_store(host):
    host.bootstrap()
    params = dict(host.params, owner=None, force=True)
    with pytest.raises(MinibusError) as info:
        issuance.ensure_certificate(params)
    assert "set owner" in info.value.message and "\n" not in info.value.message


# Every name the account can replace in its store (relative to host/), by a symlink to each kind of target.
PLANT_AT = ["tls", "tls/.minibus", "tls/.minibus/.lock", "tls/.minibus/cert.pem", "tls/.minibus/cert.pem/current",
            "tls/.minibus/cert.pem/<version>", "tls/.minibus/cert.pem/<version>/key.pem", "tls/cert.pem",
            "tls/key.pem", "tls/ca.pem", "secret-id.json"]
TARGETS = ["root-file", "root-dir", "dangling"]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("planted", PLANT_AT)
def test_planted_symlinks_change_nothing_outside_the_store(host, planted, target):
    host.bootstrap()
    store = os.path.join(host.host, "tls", ".minibus", "cert.pem")
    version = os.readlink(os.path.join(store, "current"))
    path = os.path.join(host.host, planted.replace("<version>", version))
    aim = {"root-file": host.root_file, "root-dir": host.root_dir,
           "dangling": os.path.join(host.root_only, "created-by-the-account")}[target]
    before = host.outside()
    # What the account can do: replace the name (it owns the directory holding it) by its own symlink.
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.unlink(path)
    os.symlink(aim, path)
    os.lchown(path, host.account.pw_uid, host.account.pw_gid)
    outcomes = []
    for overrides in ({"force": True}, {"force": True, "secret_id_wrapping_token": host.vault.mint_wrapped()}):
        try:
            outcomes.append(host.run(**overrides)["issued"])
        except MinibusError as exc:
            assert "\n" not in exc.message and "unexpected" not in exc.message, exc.message
            outcomes.append(exc.message)
    assert host.outside() == before, outcomes
    assert not os.path.exists(os.path.join(host.root_only, "created-by-the-account"))
