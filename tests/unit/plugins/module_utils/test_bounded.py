# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""files.read_bounded reads only small regular files; _privdrop.run_as ends a late, stopped or greedy child."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import resource
import signal
import time

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import _privdrop, files, issuance, options
from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
NOBODY = 65534


def test_read_bounded_reads_a_small_regular_file(tmp_path):
    path = tmp_path / "cert.pem"
    path.write_bytes(b"x" * 100)
    assert files.read_bounded(str(path), 100, "certificate") == b"x" * 100


def test_read_bounded_missing(tmp_path):
    assert files.read_bounded(str(tmp_path / "none"), 10, "certificate", missing_ok=True) is None
    with pytest.raises(MinibusError, match="Could not read the certificate .*none"):
        files.read_bounded(str(tmp_path / "none"), 10, "certificate")


def test_read_bounded_refuses_a_file_over_the_cap(tmp_path):
    path = tmp_path / "cert.pem"
    path.write_bytes(b"x" * 101)
    with pytest.raises(MinibusError) as exc:
        files.read_bounded(str(path), 100, "certificate")
    assert "is larger than" in exc.value.message and "\n" not in exc.value.message


def test_read_bounded_refuses_a_fifo_without_waiting(tmp_path):
    path = str(tmp_path / "cert.pem")
    os.mkfifo(path)  # nobody writes: a blocking open would never return
    with pytest.raises(MinibusError, match="is not a regular file"):
        files.read_bounded(path, 100, "certificate")


@pytest.mark.parametrize("target", ["/dev/zero", "file", "dangling"])
def test_read_bounded_never_follows_a_symlink(tmp_path, target):
    aim = str(tmp_path / "real")
    with open(aim, "w") as handle:
        handle.write("secret")
    path = str(tmp_path / "cert.pem")
    os.symlink({"/dev/zero": "/dev/zero", "file": aim, "dangling": str(tmp_path / "nowhere")}[target], path)
    with pytest.raises(MinibusError, match="is a symbolic link the module did not make"):
        files.read_bounded(path, 100, "certificate", missing_ok=True)


def test_read_bounded_refuses_a_device_and_a_directory(tmp_path):
    for path in ("/dev/zero", str(tmp_path)):
        with pytest.raises(MinibusError, match="is not a regular file"):
            files.read_bounded(path, 100, "certificate")


def test_read_bounded_relative_to_a_directory(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    fd = os.open(str(tmp_path), os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert files.read_bounded("f", 10, "certificate", dir_fd=fd) == b"abc"
        with pytest.raises(MinibusError, match="shown/f"):
            files.read_bounded("f", 1, "certificate", dir_fd=fd, shown="shown/f")
    finally:
        os.close(fd)


def _sleep(seconds):
    time.sleep(seconds)
    return "woke"


def _limits():
    return dict((name, resource.getrlimit(getattr(resource, name)))
                for name in ("RLIMIT_AS", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_CPU"))


def _raise_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        return "refused"
    return "raised"


def _greedy():
    return len(bytearray(2 * _privdrop.MAX_ADDRESS_SPACE))


def _child_pid_then_sleep(write_fd, seconds):
    os.write(write_fd, b"%d\n" % os.getpid())
    time.sleep(seconds)
    return "woke"


@root_only
def test_run_as_kills_a_child_past_its_deadline():
    started = time.monotonic()
    with pytest.raises(MinibusError) as exc:
        _privdrop.run_as(NOBODY, NOBODY, _sleep, 60, deadline_seconds=1, work="the status check")
    assert "The status check running as uid %d did not finish within 1 s (killed)" % NOBODY in exc.value.message
    assert time.monotonic() - started < 30  # killed, not waited for (60 s)


@root_only
def test_run_as_returns_within_the_deadline():
    assert _privdrop.run_as(NOBODY, NOBODY, _sleep, 0, deadline_seconds=10) == "woke"


@root_only
def test_run_as_kills_a_stopped_child():
    """What the account can do to the child (same uid after the drop): SIGSTOP it. The deadline ends it."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the stopper: waits for the dropped child's pid, stops it
        os.close(write_fd)
        try:
            child = int(os.read(read_fd, 64).split()[0])
            os.kill(child, signal.SIGSTOP)
        finally:
            os._exit(0)
    try:
        with pytest.raises(MinibusError, match="did not finish within 2 s"):
            _privdrop.run_as(NOBODY, NOBODY, _child_pid_then_sleep, write_fd, 0.5, deadline_seconds=2)
    finally:
        os.close(write_fd)
        os.close(read_fd)
        os.waitpid(pid, 0)


@root_only
def test_run_as_limits_the_child_before_the_drop():
    limits = _privdrop.run_as(NOBODY, NOBODY, _limits, deadline_seconds=10)
    assert limits["RLIMIT_AS"] == [_privdrop.MAX_ADDRESS_SPACE] * 2
    assert limits["RLIMIT_CORE"] == [0, 0]
    assert limits["RLIMIT_CPU"] == [15, 15]
    assert limits["RLIMIT_NOFILE"][1] <= _privdrop.MAX_OPEN_FILES
    assert limits["RLIMIT_FSIZE"][1] <= _privdrop.MAX_FILE_SIZE
    assert _privdrop.run_as(NOBODY, NOBODY, _raise_limit) == "refused"


@root_only
def test_run_as_a_greedy_child_is_one_sentence():
    with pytest.raises(MinibusError) as exc:
        _privdrop.run_as(NOBODY, NOBODY, _greedy)
    assert "ran out of its 512 MiB of memory" in exc.value.message


@root_only
def test_run_as_child_is_not_dumpable():
    def dumpable():
        import ctypes
        return ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
    assert _privdrop.run_as(NOBODY, NOBODY, dumpable) == 0


def test_json_nested_too_deep_is_unusable_not_a_crash(tmp_path):
    from ansible_collections.minibus.pki.plugins.module_utils import health, secret_store
    path = tmp_path / "f.json"
    path.write_text("[" * 60000)
    assert health.read_state(str(path)) == {}
    assert secret_store.load(str(path))["state"] == secret_store.CONSUMED


def test_store_reads_refuse_planted_files(tmp_path):
    from pki_test_helpers import key_pem, make_cert, new_key
    key = new_key("ec")
    cert = make_cert(key)
    store = files.CertStore(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem"))
    store.install({"cert": cert, "key": key_pem(key)}, "01")
    assert store.read()["cert"] == cert.encode()
    version = os.path.join(store.base, os.readlink(store.current))
    os.unlink(os.path.join(version, "key.pem"))
    os.mkfifo(os.path.join(version, "key.pem"))
    with pytest.raises(MinibusError, match="private key .*key.pem is not a regular file"):
        store.read()
    os.unlink(str(tmp_path / "cert.pem"))
    os.symlink("/dev/zero", str(tmp_path / "cert.pem"))
    with pytest.raises(MinibusError, match="certificate .*cert.pem is a symbolic link the module did not make"):
        store.read()


# --- the CA bundle (ca_cert) and the trust anchor (trust_anchor_path): bounded like every other read --------

def _no_hang(seconds=10):
    """A hang becomes a failure: SIGALRM interrupts a blocking open (an open() of a FIFO waits for a writer)."""
    def _alarm(_signum, _frame):
        raise AssertionError("the read hung")
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)


def _plant(tmp_path, kind):
    path = tmp_path / "bundle.pem"
    if kind == "fifo":
        os.mkfifo(str(path))
    else:
        os.symlink("/dev/zero", str(path))
    return str(path)


@pytest.mark.parametrize("kind", ["fifo", "dev-zero-link"])
def test_a_trust_anchor_fifo_or_dev_zero_is_one_sentence_not_a_hang(tmp_path, kind):
    path = _plant(tmp_path, kind)
    _no_hang()
    try:
        with pytest.raises(MinibusError) as info:
            issuance.load_trust_anchors(path)
    finally:
        signal.alarm(0)
    message = info.value.message
    assert "trust_anchor_path" in message and path in message and "not a regular file" in message, message
    assert "\n" not in message


@pytest.mark.parametrize("kind", ["fifo", "dev-zero-link"])
def test_a_ca_cert_fifo_or_dev_zero_is_one_sentence_not_a_hang(tmp_path, kind):
    path = _plant(tmp_path, kind)
    _no_hang()
    try:
        problem = options.check_ca_bundle(path)
    finally:
        signal.alarm(0)
    assert problem and "ca_cert" in problem and path in problem and "not a regular file" in problem, problem


def test_a_linked_ca_bundle_is_still_read(tmp_path):
    """/etc/ssl/certs holds links: a link to a regular file is followed to it (the file itself is bounded)."""
    real = tmp_path / "real.pem"
    real.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    os.symlink(str(real), str(tmp_path / "link.pem"))
    assert files.read_ca_bundle(str(tmp_path / "link.pem"), "ca_cert") == b"-----BEGIN CERTIFICATE-----\n"
