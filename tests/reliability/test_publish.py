# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""rsyslog and node_exporter read only root-owned, checked copies; the renewal account cannot stall, blind or
loop root (docs/design.md, "root reads the account's output only through a bounded, dropped child").

As root, with a throw-away system account standing in for minibus-certs, a host laid out as the role does
(root's minibus_certs_dir with the account's tls/ and state/, root's configuration directory with the pinned
Root CA), a certificate from the real dev OpenBao (ensure_certificate with owner), then the renewer's
``--publish`` run as root:

- the account makes tls/fullchain.pem and tls/key.pem FIFOs, or links to a root-only file: publish ends with
  one sentence, the published set is unchanged, and ``rsyslogd -N1`` on the role-rendered configuration
  completes and an rsyslogd started on it listens (before, rsyslog opened the account's FIFO and hung);
- a .prom the account plants (forged series, a FIFO, the earlier version's link to it) changes nothing:
  root's metrics file is a regular file, root 0644, readable by the ``prometheus`` user, its series from the
  checked record;
- with tcp, touching state/renewed 50 times restarts nothing (the role has no path unit any more), a second
  publish of the same set writes nothing and restarts nothing, and a new set within 10 minutes of the last
  restart waits.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import stat
import subprocess
import tempfile

import pytest
import requests

from labs.hosts import free_port, host_params, run_publish, throwaway_account
from labs.role_template import ROLE, render
from labs.rsyslog import stop_process, wait_port
from ansible_collections.minibus.pki.plugins.module_utils import issuance

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("rsyslogd"),
                                reason="needs root, useradd and rsyslogd")

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"


@pytest.fixture(scope="module")
def account():
    with throwaway_account("mbp1") as entry:
        yield entry


def as_account(account, *argv):
    """A command run by the renewal account (what it can do to its own directories)."""
    subprocess.run(["setpriv", "--reuid=%d" % account.pw_uid, "--regid=%d" % account.pw_gid, "--clear-groups", "--"]
                   + list(argv), check=True)


def snapshot(directory):
    """Type, owner, mode, inode, mtime, link target and content of everything under directory."""
    seen = {}
    for root, dirs, names in os.walk(directory):
        for name in sorted(dirs + names) + ["."]:
            path = os.path.normpath(os.path.join(root, name))
            st = os.lstat(path)
            entry = [stat.S_IFMT(st.st_mode), st.st_uid, stat.S_IMODE(st.st_mode), st.st_ino, st.st_mtime_ns]
            if stat.S_ISLNK(st.st_mode):
                entry.append(os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as handle:
                    entry.append(handle.read())
            seen[os.path.relpath(path, directory)] = entry
    return seen


class Host(object):
    """base/ (root 0755): var/ (minibus_certs_dir, root's) with tls/ and state/ (the account's), etc/ (root's
    configuration: renewer.json, trust-anchor.pem), textfile/ (node_exporter's), root-only/ (a secret)."""

    def __init__(self, vault, account, transport="relp"):
        self.base = tempfile.mkdtemp(prefix="minibus-publish-")
        os.chmod(self.base, 0o755)
        self.var = os.path.join(self.base, "var")
        self.tls = os.path.join(self.var, "tls")
        self.state = os.path.join(self.var, "state")
        self.published = os.path.join(self.var, "published")
        self.etc = os.path.join(self.base, "etc")
        self.textfile = os.path.join(self.base, "textfile")
        self.root_only = os.path.join(self.base, "root-only")
        for d, mode in ((self.var, 0o755), (self.etc, 0o755), (self.textfile, 0o755), (self.root_only, 0o700)):
            os.mkdir(d, mode)
        for d, mode in ((self.tls, 0o750), (self.state, 0o700)):
            os.mkdir(d, mode)
            os.chown(d, account.pw_uid, account.pw_gid)
        self.secret = os.path.join(self.root_only, "shadow")
        with open(self.secret, "w") as handle:
            handle.write("root:secret\n")
        os.chmod(self.secret, 0o600)
        self.anchor = os.path.join(self.etc, "trust-anchor.pem")
        with open(self.anchor, "w") as handle:
            handle.write(requests.get(vault.url + "/v1/pki/ca/pem", timeout=10, verify=vault.ca_cert).text.strip() + "\n")
        self.ca_cert = os.path.join(self.etc, "vault-ca.pem")
        shutil.copyfile(vault.ca_cert, self.ca_cert)
        for path in (self.anchor, self.ca_cert):
            os.chmod(path, 0o644)
        self.account = account
        self.vault = vault
        self.transport = transport
        self.params = dict(host_params(vault, self.var), owner=account.pw_name, trust_anchor_path=self.anchor,
                           ca_cert=self.ca_cert, cert_path=os.path.join(self.tls, "cert.pem"),
                           key_path=os.path.join(self.tls, "key.pem"), chain_path=os.path.join(self.tls, "chain.pem"),
                           fullchain_path=os.path.join(self.tls, "fullchain.pem"), ca_path=None,
                           secret_id_store=os.path.join(self.state, "secret-id.json"))
        self.metrics = os.path.join(self.textfile, "minibus_certs.prom")
        self.config = os.path.join(self.etc, "renewer.json")
        config = dict((k, v) for k, v in self.params.items() if v is not None and k in (
            "url", "ca_cert", "role_id", "approle_name", "common_name", "alt_names", "retries", "timeout", "cert_path",
            "key_path", "chain_path", "fullchain_path", "trust_anchor_path", "secret_id_store"))
        config["publish"] = {"dir": self.published, "key_usage": "clientAuth", "metrics_path": self.metrics,
                             "restart_rsyslog": transport == "tcp", "owner": account.pw_name}
        with open(self.config, "w") as handle:
            json.dump(config, handle)

    def issue(self, **overrides):
        """What the role's certificate step (and later the renewer) does: the account's store, as the account."""
        return issuance.ensure_certificate(dict(self.params, **overrides))

    def bootstrap(self):
        result = self.issue(secret_id_wrapping_token=self.vault.mint_wrapped())
        assert result["issued"] and result.get("privileges_dropped"), result
        # the renewer's record of its runs (the account's file, read by root only through the child)
        state = os.path.join(self.state, "renewer-state.json")
        with open(state, "w") as handle:
            json.dump({"last_attempt": "2026-01-01T00:00:00Z", "last_result": "ok", "last_success": "2026-01-01T00:00:00Z",
                       "renewals_total": 7, "failures_total": 2}, handle)
        os.chown(state, self.account.pw_uid, self.account.pw_gid)
        return result

    def publish(self, **env):
        return run_publish(self.config, **env)

    def rsyslog_conf(self, transport):
        """The role's minibus-tls.conf.j2 for a log server with these paths, inside a small main configuration."""
        port = free_port()
        snippet = render("minibus-tls.conf.j2", minibus_certs_rsyslog_role="server",
                         minibus_certs_rsyslog_transport=transport, minibus_certs_rsyslog_port=port,
                         minibus_certs_rsyslog_permitted_peers=["host1.minibus.test"], minibus_certs_dir=self.var,
                         minibus_certs_tls_dir=self.tls, minibus_certs_published_dir=self.published,
                         __minibus_certs_trust_anchor_path=self.anchor,
                         minibus_certs_rsyslog_remote_log=os.path.join(self.base, "remote-%s.log" % transport))
        work = os.path.join(self.base, "rsyslog-%s" % transport)
        os.makedirs(work, exist_ok=True)
        with open(os.path.join(work, "snippet.conf"), "w") as handle:
            handle.write(snippet)
        conf = os.path.join(work, "rsyslog.conf")
        with open(conf, "w") as handle:
            handle.write('global(workDirectory="%s")\ninclude(file="%s")\n' % (work, os.path.join(work, "snippet.conf")))
        return conf, port, work

    def cleanup(self):
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def host(vault, account):
    h = Host(vault, account)
    h.bootstrap()
    yield h
    h.cleanup()


def one_line(out):
    text = (out.stdout + out.stderr).strip()
    assert text and "\n" not in text and "Traceback" not in text, text
    return text


def test_publish_installs_checked_root_owned_copies_once(host):
    out = host.publish()
    assert out.returncode == 0 and one_line(out).startswith("minibus-certs-renew: published: serial "), out
    for name, mode in (("cert.pem", 0o644), ("chain.pem", 0o644), ("fullchain.pem", 0o644), ("key.pem", 0o600)):
        path = os.path.join(host.published, name)
        st = os.stat(path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, mode), name
        with open(os.path.join(host.tls, name), "rb") as mine, open(path, "rb") as published:
            assert mine.read().strip() == published.read().strip() or name in ("chain.pem", "fullchain.pem")
    for root, dirs, names in os.walk(host.published):
        for name in dirs + names + ["."]:
            assert os.lstat(os.path.join(root, name)).st_uid == 0
    before = snapshot(host.var)
    metrics_before = os.lstat(host.metrics)
    again = host.publish()
    assert again.returncode == 0 and one_line(again).startswith("minibus-certs-renew: unchanged: serial "), again
    assert snapshot(host.var) == before, "an unchanged set wrote something"
    assert os.lstat(host.metrics).st_ino == metrics_before.st_ino


@pytest.mark.parametrize("kind", ["fifo", "link to a root-only file"])
@pytest.mark.parametrize("name", ["fullchain.pem", "key.pem"])
def test_an_accounts_fifo_or_link_neither_stalls_nor_blinds_root(host, name, kind):
    assert host.publish().returncode == 0
    published = snapshot(host.published)
    target = os.path.join(host.tls, name)
    if kind == "fifo":
        as_account(host.account, "sh", "-c", 'rm -f "$1" && mkfifo "$1"', "-", target)
    else:
        as_account(host.account, "ln", "-sfn", host.secret, target)
    out = host.publish()  # the child's deadline bounds it; the subprocess timeout is only a safety net
    text = one_line(out)
    assert out.returncode == 1 and "Publishing refused:" in text and "the published set is unchanged" in text, text
    assert "root:secret" not in text
    assert snapshot(host.published) == published
    for transport in ("relp", "tcp"):
        conf, port, work = host.rsyslog_conf(transport)
        with open(os.path.join(work, "snippet.conf")) as handle:
            assert host.tls not in handle.read(), "rsyslog's configuration names the account's files"
        check = subprocess.run([RSYSLOGD, "-N1", "-f", conf], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, timeout=60, check=False)
        assert check.returncode == 0, check.stdout
        proc = subprocess.Popen([RSYSLOGD, "-n", "-f", conf, "-i", os.path.join(work, "rsyslogd.pid")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port)
        finally:
            stop_process(proc)


def _series(text):
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            values[name.split("{", 1)[0]] = int(float(value))
    return values


def test_an_accounts_metrics_file_changes_nothing_root_publishes(host):
    # the earlier layout: a root link in the collector's directory to the account's own .prom
    forged = os.path.join(host.state, "minibus_certs.prom")
    with open(forged, "w") as handle:
        handle.write('minibus_certs_status{common_name="host1.minibus.test"} 0\nforged_series 1\n')
    os.chown(forged, host.account.pw_uid, host.account.pw_gid)
    os.symlink(forged, host.metrics)
    assert host.publish().returncode == 0
    st = os.lstat(host.metrics)
    assert stat.S_ISREG(st.st_mode) and (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644), "not root's regular file"
    with open(forged) as handle:
        assert "forged_series" in handle.read(), "the account's file was changed through the link"
    seen = subprocess.run(["setpriv", "--reuid=prometheus", "--regid=prometheus", "--clear-groups", "cat", host.metrics],
                          stdout=subprocess.PIPE, universal_newlines=True, timeout=30, check=True).stdout
    assert "forged_series" not in seen
    series = _series(seen)
    from cryptography import x509  # pylint: disable=import-outside-toplevel
    with open(os.path.join(host.published, "cert.pem"), "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    expiry = int(cert.not_valid_after_utc.timestamp())
    assert expiry in [v for k, v in series.items() if "expiry" in k], series
    assert series.get("minibus_certs_renewals_total") == 7 and series.get("minibus_certs_failures_total") == 2, series
    published = snapshot(host.textfile)
    # a FIFO in place of the account's .prom: root never opens it
    as_account(host.account, "sh", "-c", 'rm -f "$1" && mkfifo "$1"', "-", forged)
    out = host.publish()
    assert out.returncode == 0 and "unchanged" in out.stdout, out
    assert snapshot(host.textfile) == published
    # a FIFO in place of the renewer's state: the certificate is still published, the metrics say what is wrong
    as_account(host.account, "sh", "-c", 'rm -f "$1" && mkfifo "$1"', "-",
               os.path.join(host.state, "renewer-state.json"))
    out = host.publish()
    assert out.returncode == 0 and "unchanged" in out.stdout, out
    with open(host.metrics) as handle:
        series = _series(handle.read())
    assert series["minibus_certs_status"] == 2 and series["minibus_certs_last_run_success"] == 0, series


def test_tcp_restarts_only_for_a_new_published_set_at_most_every_ten_minutes(vault, account, tmp_path):
    host = Host(vault, account, transport="tcp")
    try:
        host.bootstrap()
        # systemctl stands in for systemd: every restart request is counted
        fake = tmp_path / "bin"
        fake.mkdir()
        calls = tmp_path / "systemctl-calls"
        (fake / "systemctl").write_text('#!/bin/sh\necho "$*" >> %s\n' % calls)
        (fake / "systemctl").chmod(0o755)
        env = {"PATH": "%s:%s" % (fake, os.environ["PATH"])}

        def restarts():
            return calls.read_text().splitlines() if calls.exists() else []

        out = host.publish(**env)
        assert out.returncode == 0 and "rsyslog restarted" in out.stdout, out
        assert restarts() == ["try-restart rsyslog.service"]
        # no unit of the role watches anything the account writes
        templates = os.listdir(os.path.join(ROLE, "templates"))
        assert not [t for t in templates if t.endswith(".path.j2")], templates
        for name in templates:
            with open(os.path.join(ROLE, "templates", name)) as handle:
                text = handle.read()
            assert "PathChanged" not in text and "PathModified" not in text, name
        unit = render("minibus-certs-renew.service.j2", minibus_certs_rsyslog_role="client",
                      minibus_certs_vault_url="https://vault.example.org:8200")
        assert "\nExecStopPost=+/usr/local/lib/minibus-certs/minibus-certs-renew --publish --config " in unit
        stamp = os.path.join(host.state, "renewed")
        for i in range(50):
            as_account(account, "sh", "-c", 'echo %d > "$1"' % i, "-", stamp)
        before = snapshot(host.published)
        for _attempt in range(2):
            again = host.publish(**env)
            assert again.returncode == 0 and "unchanged" in again.stdout and "restart" not in again.stdout, again
        assert snapshot(host.published) == before and restarts() == ["try-restart rsyslog.service"]
        # a renewal minutes after the last restart: published now, rsyslog restarted by a later publish
        host.issue(force=True)
        renewed = host.publish(**env)
        assert renewed.returncode == 0 and "published" in renewed.stdout and "restart pending" in renewed.stdout, renewed
        assert restarts() == ["try-restart rsyslog.service"]
    finally:
        host.cleanup()
