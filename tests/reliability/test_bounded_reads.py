# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Root's reads of the renewal account's files are bounded: no FIFO, device, huge file or stopped child
makes root wait or grow, and root never copies a file the account points it at.

As root, with a throw-away system account standing in for minibus-certs (the account owns tls/ and
state/, as the role lays them out):

* the account replaces a file of its store by a FIFO, a link to /dev/zero or a 100 MiB file: the local
  fact (the role's template, run as root) prints its one JSON error, and the module's check-mode plan
  as root fails with one sentence, each within the dropped child's deadline;
* the account SIGSTOPs the dropped child (same uid after the drop): the parent kills it at the deadline
  and answers one sentence;
* the account links state/renewer-state.json to a root-only 0600 JSON file and root runs the renewer by
  hand (``--force``, real OpenBao): the root-only file's content reaches nothing the account can read,
  the file is unchanged; a FIFO there: the renewer still finishes;
* the interpreter lies below a directory the account cannot enter: one sentence naming it, not a
  ModuleNotFoundError half-way through.

Each run has a subprocess timeout, so a regression fails instead of hanging the suite.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import requests

from labs.hosts import account_store, clean_env, COLLECTIONS_DIR, FactHost, RENEWER_SNIPPET, throwaway_account
from ansible_collections.minibus.pki.plugins.module_utils import _privdrop, issuance
from ansible_collections.minibus.pki.plugins.module_utils.renewer import load_config

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                                reason="needs root and useradd")

HUGE = 100 * 1024 * 1024
# Subprocess bound: the dropped child's deadline (20 s for status reads) and start-up, with room to spare.
RUN_TIMEOUT = 90


@pytest.fixture(scope="module")
def account():
    with throwaway_account("mbb1") as entry:
        yield entry


class Host(FactHost):
    """The fact's host (labs.hosts.FactHost, as test_fact.py uses it), its config with a fullchain_path too."""

    def __init__(self, account):
        FactHost.__init__(self, account)
        with open(self.config) as handle:
            config = json.load(handle)
        config["fullchain_path"] = os.path.join(self.tls, "fullchain.pem")
        with open(self.config, "w") as handle:
            json.dump(config, handle)
        self.params = config

    def as_account(self, func, *args):
        return _privdrop.run_as(self.account.pw_uid, self.account.pw_gid, func, *args, deadline_seconds=20)

    def replace(self, rel, kind):
        """What the account can do to a name in a directory it owns (it runs as the account)."""
        path = os.path.join(self.base, "store", rel)
        if "<version>" in path:
            store = os.path.join(self.tls, ".minibus", "cert.pem")
            path = path.replace("<version>", os.readlink(os.path.join(store, "current")))
        self.as_account(_replace, path, kind)
        if kind == "huge":  # written by root for the account: the dropped child's file size limit is 1 MiB
            with open(path, "wb") as handle:
                handle.truncate(HUGE)  # sparse: no disk, all of it readable
            os.chown(path, self.account.pw_uid, self.account.pw_gid)
        return path


def _replace(path, kind):
    if os.path.lexists(path):
        os.unlink(path)
    if kind == "fifo":
        os.mkfifo(path, 0o644)
    elif kind == "devzero":
        os.symlink("/dev/zero", path)
    return True


@pytest.fixture
def host(account):
    h = Host(account)
    yield h
    shutil.rmtree(h.base, ignore_errors=True)


# Every file a plan or the fact reads that the account can replace, and what it puts there.
PLANTS = [("tls/cert.pem", "fifo"), ("tls/key.pem", "fifo"), ("tls/fullchain.pem", "fifo"),
          ("tls/.minibus/cert.pem/<version>/cert.pem", "fifo"), ("state/secret-id.json", "fifo"),
          ("tls/cert.pem", "devzero"), ("tls/key.pem", "devzero"), ("tls/cert.pem", "huge"),
          ("tls/.minibus/cert.pem/<version>/key.pem", "huge"), ("state/secret-id.json", "huge")]


@pytest.mark.parametrize("rel, kind", PLANTS)
def test_the_fact_answers_one_json_error(host, rel, kind):
    path = host.replace(rel, kind)
    out, fact = host.run()  # subprocess with a timeout: a hang fails the test
    assert fact["error"] and "\n" not in fact["error"], fact
    assert path in fact["error"] or os.path.dirname(path) in fact["error"], fact["error"]
    assert ("is not a regular file" in fact["error"] or "symbolic link the module did not make" in fact["error"]
            or "larger than 64 KiB" in fact["error"]), fact["error"]
    assert "Traceback" not in out


PLAN_SNIPPET = ("import json, sys; sys.path.insert(0, %r); "
                "from ansible_collections.minibus.pki.plugins.module_utils import issuance; "
                "from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError\n"
                "try:\n    r = issuance.ensure_certificate(json.loads(sys.argv[1]), check_mode=True)\n"
                "    print(json.dumps({'changed': r['changed'], 'reason': r['reason']}))\n"
                "except MinibusError as exc:\n    print(json.dumps({'error': exc.message}))\n" % COLLECTIONS_DIR)


def _plan_as_root(params):
    proc = subprocess.run([sys.executable, "-c", PLAN_SNIPPET, json.dumps(params)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, env=clean_env(), timeout=RUN_TIMEOUT,
                          check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("rel, kind", [p for p in PLANTS if p[0] != "state/secret-id.json"])
def test_the_check_mode_plan_as_root_is_one_sentence(host, rel, kind):
    params = dict(load_config(host.config), owner=host.account.pw_name, group=host.account.pw_name)
    control = _plan_as_root(params)
    assert "error" not in control and control["changed"] is True, control  # no fullchain yet: due
    path = host.replace(rel, kind)
    answer = _plan_as_root(params)
    assert "error" in answer and "\n" not in answer["error"], answer
    assert path in answer["error"] or os.path.dirname(path) in answer["error"], answer


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
            return [int(c) for c in handle.read().split()]
    except (IOError, OSError):
        return []


def _stop_first_child_of(pid, account, report_fd):
    """Run as the account (forked): SIGSTOP the first child pid forks (the dropped child, the account's now)."""
    os.setgroups([account.pw_gid])
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for child in _children(pid):
            try:
                os.kill(child, signal.SIGSTOP)
            except OSError:
                continue
            os.write(report_fd, b"%d\n" % child)
            return
    os.write(report_fd, b"0\n")


def test_a_stopped_child_is_killed_at_the_deadline(host):
    """The account stops the fact's dropped child; root answers after the deadline, and the child is gone."""
    for _attempt in range(5):  # the child lives a fraction of a second: the stopper may miss it
        fact = subprocess.Popen([sys.executable, "-I", "-B", host.fact], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd="/")
        read_fd, write_fd = os.pipe()
        stopper = os.fork()
        if stopper == 0:
            try:
                os.close(read_fd)
                _stop_first_child_of(fact.pid, host.account, write_fd)
            finally:
                os._exit(0)
        os.close(write_fd)
        try:
            out, err = fact.communicate(timeout=RUN_TIMEOUT)
        finally:
            if fact.poll() is None:
                fact.kill()
            os.waitpid(stopper, 0)
        stopped = int(os.read(read_fd, 64).split()[0] or 0)
        os.close(read_fd)
        answer = json.loads(out.decode())
        if stopped and answer["error"]:
            break
    else:
        pytest.fail("the stopper never caught the dropped child")
    assert err == b"" and out.decode().count("\n") == 1
    assert "did not finish within 20 s (killed)" in answer["error"], answer
    assert not os.path.exists("/proc/%d" % stopped) or _state_of(stopped) in ("Z", None)


def _state_of(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (IOError, OSError):
        return None


# --- the renewer run by hand as root (real OpenBao) ------------------------------------------------------------

ROOT_SECRET = "ROOT-ONLY-STATE-%s" % uuid.uuid4().hex


class RenewerHost(object):
    """base/ (root 0755): etc/renewer.json (root's), store/{tls,state} (the account's), root-only/ (0700)."""

    def __init__(self, vault, account):
        self.account = account
        self.base = tempfile.mkdtemp(prefix="minibus-bounded-")
        os.chmod(self.base, 0o755)
        self.tls, self.state = account_store(self.base, account)
        self.ca_cert = os.path.join(self.base, "vault-ca.pem")
        shutil.copyfile(vault.ca_cert, self.ca_cert)
        os.chmod(self.ca_cert, 0o644)
        self.anchor = os.path.join(self.base, "root-ca.pem")
        with open(self.anchor, "w") as handle:
            handle.write(requests.get(vault.url + "/v1/pki/ca/pem", timeout=10, verify=vault.ca_cert).text.strip()
                         + "\n")
        os.chmod(self.anchor, 0o644)
        self.root_only = os.path.join(self.base, "root-only")
        os.mkdir(self.root_only, 0o700)
        self.root_state = os.path.join(self.root_only, "state.json")
        with open(self.root_state, "w") as handle:
            # Fields a renewer run keeps (record_attempt rewrites only the ones it sets).
            json.dump({"last_result": "ok", "last_failure": ROOT_SECRET, "note": ROOT_SECRET, "renewals_total": 7},
                      handle)
        os.chmod(self.root_state, 0o600)
        self.state_file = os.path.join(self.state, "renewer-state.json")
        config = dict(url=vault.url, ca_cert=self.ca_cert, trust_anchor_path=self.anchor, role_id="minibus/csr",
                      approle_name=vault.approle_name, common_name="host1.minibus.test",
                      alt_names=["alias.minibus.test"], retries=1, timeout=10,
                      cert_path=os.path.join(self.tls, "cert.pem"), key_path=os.path.join(self.tls, "key.pem"),
                      fullchain_path=os.path.join(self.tls, "fullchain.pem"),
                      secret_id_store=os.path.join(self.state, "secret-id.json"),
                      stamp_path=os.path.join(self.state, "renewed"))
        etc = os.path.join(self.base, "etc")
        os.mkdir(etc, 0o755)
        self.config = os.path.join(etc, "renewer.json")
        self.write_config(config)
        # The role's first run: the module as root with owner, a fresh wrapped secret id.
        result = issuance.ensure_certificate(dict(load_config(self.config), owner=account.pw_name,
                                                  secret_id_wrapping_token=vault.mint_wrapped()))
        assert result["issued"] and result["privileges_dropped"], result

    def write_config(self, config):
        self.config_data = config
        with open(self.config, "w") as handle:
            json.dump(config, handle)
        os.chmod(self.config, 0o600)

    def renew(self, *args):
        proc = subprocess.run([sys.executable, "-c", RENEWER_SNIPPET, "--config", self.config] + list(args),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              env=clean_env(), timeout=RUN_TIMEOUT * 3, check=False)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def readable_by_account(self):
        """The content of every file the account can read below base (it is the account's store, mostly)."""
        def read(path):
            try:
                with open(path, "rb") as handle:
                    return handle.read()
            except (IOError, OSError):
                return b""
        seen = {}
        for root, dirs, names in os.walk(self.base):
            for name in names:
                path = os.path.join(root, name)
                if os.path.islink(path) or not stat.S_ISREG(os.lstat(path).st_mode):
                    continue
                seen[path] = self.account_reads(path)
        return dict((k, v) for k, v in seen.items() if v is not None)

    def account_reads(self, path):
        return _privdrop.run_as(self.account.pw_uid, self.account.pw_gid, _read_text, path, deadline_seconds=20)

    def root_file(self):
        st = os.lstat(self.root_state)
        with open(self.root_state, "rb") as handle:
            return st.st_uid, stat.S_IMODE(st.st_mode), handle.read()


def _read_text(path):
    try:
        with open(path, "rb") as handle:
            return handle.read(1024 * 1024).decode("utf-8", "replace")
    except (IOError, OSError):
        return None


@pytest.fixture
def renewer_host(vault, account):
    h = RenewerHost(vault, account)
    yield h
    shutil.rmtree(h.base, ignore_errors=True)


@pytest.mark.parametrize("with_owner", [True, False])
def test_a_state_link_to_a_root_only_file_leaks_nothing(renewer_host, with_owner):
    h = renewer_host
    if with_owner:
        h.write_config(dict(h.config_data, owner=h.account.pw_name))
    before = h.root_file()
    _privdrop.run_as(h.account.pw_uid, h.account.pw_gid, _link, h.root_state, h.state_file, deadline_seconds=20)
    proc = h.renew("--force")
    assert ROOT_SECRET not in proc.stdout + proc.stderr
    for path, text in h.readable_by_account().items():
        assert ROOT_SECRET not in text, path
    assert h.root_file() == before
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert lines and all(line.startswith("minibus-certs-renew: ") for line in lines), lines
    if with_owner:
        assert proc.returncode == 0 and "renewed: serial" in proc.stdout, proc.stderr
    else:
        assert proc.returncode == 1 and "sudo -u %s minibus-certs-renew" % h.account.pw_name in proc.stderr, proc.stderr
    # --status and --check as root go through the same drop (or the same refusal).
    for args in (["--status", "--json"], ["--check"]):
        status = h.renew(*args)
        assert ROOT_SECRET not in status.stdout + status.stderr
        assert (status.stdout + status.stderr).count("\n") == 1, status
    assert h.root_file() == before


def _link(target, path):
    if os.path.lexists(path):
        os.unlink(path)
    os.symlink(target, path)
    return True


def _fifo(path):
    if os.path.lexists(path):
        os.unlink(path)
    os.mkfifo(path, 0o644)
    return True


def test_a_state_fifo_does_not_hang_the_renewer(renewer_host):
    h = renewer_host
    h.write_config(dict(h.config_data, owner=h.account.pw_name))
    _privdrop.run_as(h.account.pw_uid, h.account.pw_gid, _fifo, h.state_file, deadline_seconds=20)
    proc = h.renew("--force")  # a timeout here is the failure
    assert proc.returncode == 0 and "renewed: serial" in proc.stdout, (proc.stdout, proc.stderr)
    status = h.renew("--status", "--json")
    assert status.returncode == 0 and json.loads(status.stdout)["renewals_total"] == 1, status


def _closed_venv():
    """The test's venv reached through a root 0700 directory (root's home, a mktemp -d): (dir, its python)."""
    closed = tempfile.mkdtemp(prefix="minibus-closed-")  # root 0700
    venv = os.path.join(closed, "venv")
    os.symlink(sys.prefix, venv)  # the same venv, reached through the closed directory
    python = os.path.join(venv, "bin", os.path.basename(sys.executable))
    probe = subprocess.run([python, "-c", "import sys, hvac; print(sys.executable, hvac.__file__)"],
                           stdout=subprocess.PIPE, universal_newlines=True, check=True, env=clean_env())
    assert probe.stdout.split()[1].startswith(closed), probe.stdout  # the libraries come from there
    return closed, python


def test_an_interpreter_the_account_cannot_read_still_renews(renewer_host):
    """The renewer's Python below a 0700 root directory: everything is imported before the drop, so it runs.

    (An earlier version refused up front because the account cannot enter the interpreter's directory.)
    """
    h = renewer_host
    h.write_config(dict(h.config_data, owner=h.account.pw_name))
    closed, python = _closed_venv()
    try:
        proc = subprocess.run([python, "-c", RENEWER_SNIPPET, "--config", h.config, "--force"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              env=clean_env(), timeout=RUN_TIMEOUT, check=False)
        assert proc.returncode == 0 and "renewed: serial" in proc.stdout, (proc.stdout, proc.stderr)
    finally:
        shutil.rmtree(closed, ignore_errors=True)


# As root from the closed venv: the dropped child imports a library not imported before the fork.
_LATE_IMPORT = ("import sys; sys.path.insert(0, %r); import importlib; "
                "from ansible_collections.minibus.pki.plugins.module_utils import _privdrop; "
                "from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError\n"
                "try:\n    _privdrop.run_as(int(sys.argv[1]), int(sys.argv[2]), importlib.import_module, sys.argv[3])\n"
                "except MinibusError as exc:\n    print(exc.message); sys.exit(1)\n" % COLLECTIONS_DIR)


def test_an_import_the_account_cannot_read_is_one_sentence(renewer_host):
    h = renewer_host
    closed, python = _closed_venv()
    try:
        proc = subprocess.run([python, "-c", _LATE_IMPORT, str(h.account.pw_uid), str(h.account.pw_gid), "jinja2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                              env=clean_env(), timeout=RUN_TIMEOUT, check=False)
        text = (proc.stdout + proc.stderr).strip()
        assert proc.returncode == 1 and "\n" not in text and "Traceback" not in text, text
        assert "unexpected" not in text, text
        assert ("The renewal account %s cannot read the Python interpreter's directory" % h.account.pw_name
                in text and closed in text and "jinja2" in text), text
    finally:
        shutil.rmtree(closed, ignore_errors=True)
