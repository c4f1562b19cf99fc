# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Planted symlinks in the store are refused, never followed; the privilege drop really drops."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import _privdrop, files
from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError, SecretIdRejected

from pki_test_helpers import key_pem, make_cert, new_key

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
NOBODY = 65534


def _issuance():
    key = new_key("ec")
    cert = make_cert(key)
    return {"cert": cert, "key": key_pem(key), "chain": cert, "ca": cert}


def _state(path):
    """Owner, mode and content of a path (following nothing)."""
    st = os.lstat(path)
    content = None
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as handle:
            content = handle.read()
    elif stat.S_ISDIR(st.st_mode):
        content = sorted(os.listdir(path))
    return st.st_uid, st.st_gid, st.st_mode, content


@pytest.fixture
def world(tmp_path):
    """A store dir, a 'root-only' file and dir outside it to aim symlinks at."""
    secret = tmp_path / "outside" / "shadow"
    secret.parent.mkdir()
    secret.write_text("root:secret\n")
    os.chmod(str(secret), 0o600)
    tls = tmp_path / "tls"
    tls.mkdir()
    store = files.CertStore(str(tls / "cert.pem"), str(tls / "key.pem"), str(tls / "chain.pem"), str(tls / "ca.pem"))
    return dict(tmp=tmp_path, tls=tls, store=store, secret=str(secret), outside=str(secret.parent))


@pytest.mark.parametrize("target", ["file", "dangling"])
def test_lock_never_follows_a_planted_symlink(world, target):
    lock_dir = world["tls"] / ".minibus"
    lock_dir.mkdir()
    aim = world["secret"] if target == "file" else os.path.join(world["outside"], "ld.so.preload")
    before = _state(world["outside"]), (_state(aim) if os.path.exists(aim) else None)
    os.symlink(aim, str(lock_dir / ".lock"))
    with pytest.raises(MinibusError) as info:
        with files.exclusive_lock(str(lock_dir / ".lock"), 0, 0):
            pass
    assert "is a symbolic link the module did not make: remove it" in info.value.message
    assert "nothing was requested from Vault" in info.value.message
    assert (_state(world["outside"]), (_state(aim) if os.path.exists(aim) else None)) == before


@pytest.mark.parametrize("planted", [".minibus", ".minibus/cert.pem", ".minibus/cert.pem/current",
                                     ".minibus/cert.pem/v-1"])
def test_install_refuses_a_symlink_it_did_not_make(world, planted):
    store = world["store"]
    if planted == ".minibus/cert.pem/v-1":
        os.makedirs(store.base)
        os.symlink(world["outside"], os.path.join(store.base, "v-1"))
        os.symlink("v-1", store.current)
    else:
        path = str(world["tls"] / planted)
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        os.symlink(world["outside"], path)
    before = _state(world["outside"]), _state(world["secret"])
    with pytest.raises(MinibusError) as info:
        store.check_entries()
    assert "is a symbolic link the module did not make" in info.value.message
    with pytest.raises(MinibusError):
        store.install(_issuance(), "01")
    assert (_state(world["outside"]), _state(world["secret"])) == before


def test_prune_removes_a_planted_version_link_never_its_target(world):
    store = world["store"]
    store.install(_issuance(), "01")
    os.symlink(world["outside"], os.path.join(store.base, "v-0-planted"))
    before = _state(world["outside"]), _state(world["secret"])
    store.install(_issuance(), "02")
    assert not os.path.lexists(os.path.join(store.base, "v-0-planted"))
    assert (_state(world["outside"]), _state(world["secret"])) == before


def test_a_non_ascii_answer_leaves_no_staging_debris(world):
    issued = _issuance()
    issued["chain"] = issued["chain"].replace("-----END", "\u00e9-----END")
    with pytest.raises(MinibusError) as info:
        world["store"].install(issued, "01")
    assert "not ASCII PEM text; nothing was written" in info.value.message
    assert not os.path.exists(str(world["tls"] / ".minibus"))
    assert sorted(os.listdir(str(world["tls"]))) == []


@root_only
def test_root_without_owner_refuses_a_store_another_account_owns(world):
    store = world["store"]
    store.install(_issuance(), "01")
    store.check_entries(owner_uid=0)
    os.chown(store.base, NOBODY, NOBODY)
    with pytest.raises(MinibusError) as info:
        store.check_entries(owner_uid=0)
    assert "belongs to uid %d" % NOBODY in info.value.message and "set owner" in info.value.message


@root_only
def test_run_as_drops_for_good():
    def who():
        regained = True
        try:
            os.setuid(0)
        except OSError:
            regained = False
        return [os.getuid(), os.geteuid(), os.getgid(), os.getegid(), os.getgroups(), regained]
    assert _privdrop.run_as(NOBODY, NOBODY, who) == [NOBODY, NOBODY, NOBODY, NOBODY, [NOBODY], False]
    assert os.geteuid() == 0  # the parent stays what it was


@root_only
def test_run_as_relays_the_one_sentence_error_and_its_class():
    def fail():
        error = SecretIdRejected("AppRole login was refused: get a new one.", 400)
        raise error

    def crash():
        return {}["missing"]
    with pytest.raises(SecretIdRejected) as info:
        _privdrop.run_as(NOBODY, NOBODY, fail)
    assert info.value.message == "AppRole login was refused: get a new one." and info.value.status == 400
    with pytest.raises(MinibusError) as info:
        _privdrop.run_as(NOBODY, NOBODY, crash)
    assert "unexpected KeyError" in info.value.message


def test_no_drop_when_not_root_or_same_account():
    assert not _privdrop.needs_drop(-1)
    assert not _privdrop.needs_drop(0)
    assert _privdrop.needs_drop(NOBODY) == (os.geteuid() == 0)


@root_only
def test_a_numeric_owner_without_an_account_needs_a_group(tmp_path):
    from ansible_collections.minibus.pki.plugins.module_utils import issuance
    params = {"url": "https://127.0.0.1:9", "common_name": "h.example.org", "cert_path": str(tmp_path / "c.pem"),
              "key_path": str(tmp_path / "k.pem"), "owner": "4242424", "token": "t",
              "engine_mount_point": "pki_int", "role_name": "minibus-server"}
    with pytest.raises(MinibusError) as info:
        issuance.ensure_certificate(params)
    assert "owner 4242424 has no account on this host" in info.value.message
