# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import shutil
import stat
import tempfile
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ansible_collections.minibus.pki.plugins.module_utils import files
from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError

from pki_test_helpers import key_pem, make_cert, new_key


def _issuance(serial=None):
    key = new_key("ec")
    cert = make_cert(key, serial=serial)
    return {"cert": cert, "key": key_pem(key), "chain": cert, "ca": cert}


def _serial_of(pem):
    return "%x" % x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem).serial_number


def _versions(base):
    return sorted(e for e in os.listdir(base) if e.startswith("v-"))


@pytest.fixture
def store(tmp_path):
    d = tmp_path / "tls"
    return files.CertStore(str(d / "host.crt"), str(d / "host.key"), str(d / "chain.pem"), str(d / "ca.pem"))


def test_install_layout_contents_and_modes(store, tmp_path):
    issued = _issuance()
    final = store.install(issued, "0a:bc")
    base = str(tmp_path / "tls" / ".minibus" / "host.crt")
    assert store.base == base
    assert os.path.islink(store.current)
    assert os.readlink(store.current) == os.path.basename(final)
    assert os.path.basename(final).startswith("v-") and os.path.basename(final).endswith("-0abc")
    for role, path in store.paths.items():
        assert os.path.islink(path), role
        target = os.readlink(path)
        assert not os.path.isabs(target)  # next to the store: relative
        assert target == os.path.join(".minibus", "host.crt", "current", files.FILE_NAMES[role])
        with open(path) as handle:
            assert handle.read() == issued[role]
    assert stat.S_IMODE(os.stat(store.paths["key"]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.paths["cert"]).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(store.paths["chain"]).st_mode) == 0o644
    assert store.links_in_place()
    content = store.read()
    assert content["cert"] == issued["cert"].encode() and content["key"] == issued["key"].encode()


def test_read_before_install(store):
    assert store.read() == {"cert": None, "key": None, "chain": None, "ca": None}
    assert not store.links_in_place()


def test_key_in_other_directory_gets_absolute_link(tmp_path):
    store = files.CertStore(str(tmp_path / "certs" / "h.crt"), str(tmp_path / "private" / "h.key"))
    issued = _issuance()
    store.install(issued, "01")
    assert os.readlink(store.paths["key"]) == os.path.join(store.current, "key.pem")
    assert os.path.isabs(os.readlink(store.paths["key"]))
    with open(store.paths["key"]) as handle:
        assert handle.read() == issued["key"]


def test_second_install_swaps_and_prunes(store):
    first = store.install(_issuance(), "01")
    second_files = _issuance()
    second = store.install(second_files, "02")
    assert os.readlink(store.current) == os.path.basename(second)
    assert _versions(store.base) == sorted([os.path.basename(first), os.path.basename(second)])
    third_files = _issuance()
    third = store.install(third_files, "03")
    assert os.readlink(store.current) == os.path.basename(third)
    # exactly one previous version is kept
    assert len(_versions(store.base)) == 2
    assert os.path.basename(third) in _versions(store.base)
    assert not os.path.exists(first)
    with open(store.paths["cert"]) as handle:
        assert handle.read() == third_files["cert"]


def test_same_serial_same_second_gets_unique_version(store):
    a = store.install(_issuance(), "05")
    b = store.install(_issuance(), "05")
    assert a != b
    assert os.readlink(store.current) == os.path.basename(b)


def test_prune_removes_leftovers(store):
    store.install(_issuance(), "01")
    os.mkdir(os.path.join(store.base, ".staging-123-deadbeef"))
    with open(os.path.join(store.base, ".staging-123-deadbeef", "cert.pem"), "w") as handle:
        handle.write("half")
    os.symlink("nowhere", os.path.join(store.base, ".link-9-abcd"))
    store.install(_issuance(), "02")
    leftovers = [e for e in os.listdir(store.base) if e.startswith(".staging-") or e.startswith(".link-")]
    assert leftovers == []


def test_prune_keeps_the_previous_version_within_one_second(store, monkeypatch):
    frozen = time.gmtime()
    monkeypatch.setattr(files.time, "gmtime", lambda *a: frozen)
    store.install(_issuance(), "ff")
    previous = store.install(_issuance(), "01")
    current = store.install(_issuance(), "80")
    assert _versions(store.base) == sorted([os.path.basename(previous), os.path.basename(current)])


def test_migration_from_regular_files(tmp_path):
    d = tmp_path / "tls"
    d.mkdir()
    (d / "host.crt").write_text("old cert")
    (d / "host.key").write_text("old key")
    store = files.CertStore(str(d / "host.crt"), str(d / "host.key"))
    assert not store.links_in_place()
    issued = _issuance()
    store.install(issued, "01")
    assert os.path.islink(str(d / "host.crt")) and os.path.islink(str(d / "host.key"))
    assert (d / "host.crt").read_text() == issued["cert"]
    assert (d / "host.key").read_text() == issued["key"]
    assert store.links_in_place()
    assert sorted(os.listdir(str(d))) == [".minibus", "host.crt", "host.key"]


def test_check_writable_ok(store):
    store.check_writable()  # nothing exists yet: the ancestors are writable


@pytest.mark.parametrize("mode", [0o644, 0o755], ids=["plain-file", "executable-file"])
def test_check_writable_under_a_regular_file(tmp_path, mode):
    # root may "execute" a 0755 file, so os.access alone would let it pass as a directory
    blocker = tmp_path / "file.txt"
    blocker.write_text("#!/bin/sh\n")
    os.chmod(str(blocker), mode)
    store = files.CertStore(str(blocker / "sub" / "h.crt"), str(blocker / "sub" / "h.key"))
    with pytest.raises(MinibusError) as info:
        store.check_writable()
    message = info.value.message
    assert "\n" not in message and message.endswith(".") and message.count(". ") == 0
    assert str(blocker) in message and "not a directory" in message
    assert "nothing was requested from Vault" in message


def _as_unprivileged(function):
    """Run function() as is, or, as root (whom directory permissions do not stop), in a forked child
    running as nobody; return its result (a string) either way."""
    if os.geteuid() != 0:
        return function()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: nobody, report one line, never return into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, function().encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        result = pipe.read().decode()
    status = os.waitpid(pid, 0)[1]
    assert status == 0, "the unprivileged child failed (%r)" % result
    return result


def test_check_writable_read_only_dir():
    # tmp_path lies under a root-only directory: nobody could not even reach it
    base = tempfile.mkdtemp(prefix="minibus-ro-")
    try:
        os.chmod(base, 0o755)
        d = os.path.join(base, "ro")
        os.mkdir(d, 0o555)
        os.chmod(d, 0o555)

        def _check():
            store = files.CertStore(os.path.join(d, "h.crt"), os.path.join(d, "h.key"))
            try:
                store.check_writable()
            except MinibusError as error:
                return error.message
            return "no error"

        message = _as_unprivileged(_check)
        assert message != "no error"
        assert "\n" not in message and d in message
        assert os.listdir(d) == []
    finally:
        os.chmod(os.path.join(base, "ro"), 0o755)
        shutil.rmtree(base)


def test_check_writable_public_path_is_a_directory(tmp_path):
    (tmp_path / "h.crt").mkdir()
    store = files.CertStore(str(tmp_path / "h.crt"), str(tmp_path / "h.key"))
    with pytest.raises(MinibusError) as info:
        store.check_writable()
    assert "is a directory" in info.value.message


def test_install_failure_is_one_sentence(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    store = files.CertStore(str(blocker / "h.crt"), str(blocker / "h.key"))
    with pytest.raises(MinibusError) as info:
        store.install(_issuance(), "01")
    assert "\n" not in info.value.message and "Could not write" in info.value.message


def test_write_file_atomic(tmp_path):
    path = tmp_path / "secret.json"
    files.write_file_atomic(str(path), '{"a": 1}')
    assert path.read_text() == '{"a": 1}'
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o600
    files.write_file_atomic(str(path), b"second", mode=0o644)
    assert path.read_bytes() == b"second"
    assert stat.S_IMODE(os.stat(str(path)).st_mode) == 0o644
    assert os.listdir(str(tmp_path)) == ["secret.json"]


def test_write_file_atomic_failure_leaves_nothing(tmp_path):
    with pytest.raises(MinibusError) as info:
        files.write_file_atomic(str(tmp_path / "missing-dir" / "x"), "data")
    assert "\n" not in info.value.message
    assert os.listdir(str(tmp_path)) == []


def test_atomic_swap_never_mixes_cert_and_key(tmp_path):
    d = tmp_path / "tls"
    store = files.CertStore(str(d / "host.crt"), str(d / "host.key"))
    store.install(_issuance(), "00")
    issuances = [_issuance() for dummy in range(30)]
    stop = threading.Event()
    pairs, mismatches, vanished, errors = [0], [], [0], []

    def reader():
        while not stop.is_set():
            try:
                version = os.path.realpath(store.current)
                with open(os.path.join(version, "cert.pem"), "rb") as handle:
                    cert_pem = handle.read()
                with open(os.path.join(version, "key.pem"), "rb") as handle:
                    pem_key = handle.read()
            except (IOError, OSError):
                vanished[0] += 1  # the version was pruned between resolving and reading: not a mix
                continue
            try:
                cert = x509.load_pem_x509_certificate(cert_pem)
                key = serialization.load_pem_private_key(pem_key, password=None)
            except ValueError as exc:  # a half-written file
                errors.append(repr(exc))
                continue
            spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            if cert.public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
                mismatches.append(version)
            pairs[0] += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for number, issued in enumerate(issuances):
            store.install(issued, "%02x" % (number + 1))
            time.sleep(0.002)
    finally:
        stop.set()
        thread.join(10)
    assert not errors
    assert not mismatches
    assert pairs[0] > 0
    with open(store.paths["cert"]) as handle:
        assert handle.read() == issuances[-1]["cert"]
    with open(store.paths["key"]) as handle:
        assert handle.read() == issuances[-1]["key"]


def test_exclusive_lock_serialises(tmp_path):
    lock = str(tmp_path / ".minibus" / ".lock")
    with files.exclusive_lock(lock):
        assert os.path.exists(lock)
        started = time.time()
        with pytest.raises(MinibusError) as info:
            with files.exclusive_lock(lock, wait_seconds=0.5):
                pass
        assert time.time() - started >= 0.5
        assert "Another issuance" in info.value.message
    with files.exclusive_lock(lock, wait_seconds=0.5):  # released: free again
        pass


def test_exclusive_lock_waits_for_release(tmp_path):
    lock = str(tmp_path / ".lock")
    held = threading.Event()
    release = threading.Event()

    def holder():
        with files.exclusive_lock(lock):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    timer = threading.Timer(0.3, release.set)
    timer.start()
    started = time.time()
    with files.exclusive_lock(lock, wait_seconds=5):
        assert time.time() - started >= 0.2
    thread.join(5)
