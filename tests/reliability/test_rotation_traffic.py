# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Intermediate CA rotation under traffic (issue 9): the README's runbook, run on a lab of real processes.

A real OpenBao over HTTPS (its own instance: the rotation and the retire change the PKI, and retire
needs every certificate of the old intermediate gone), bootstrapped with playbooks/vault_bootstrap.yml.
Three host directories as the role lays them out: the log server ``logs.minibus.test`` (log-server
AppRole and PKI role) and two permitted clients (client AppRole and PKI role), each bootstrapped the way
the role's first run does (a wrapped secret id from the broker, vault_pki_issue's core) and renewed by
the real renewer from its renewer.json. One real rsyslogd per host, its TLS configuration rendered from
the role's own template (minibus-tls.conf.j2) pointing at that host's fullchain, key and the pinned
Root CA; everything on loopback, peers named by their certificates (the clients target 127.0.0.1 and
check the server's certificate name).

Both clients take sequence-numbered lines at a steady rate during the whole test. Then the runbook:
ca_rotate.yml step=rotate; renew (renewer --force) and restart rsyslog (what minibus-certs-reload does)
in the worst order: the server first, then one client, later the other; ca_rotate.yml step=retire is
refused while certificates of the old intermediate are valid, and retires it once they have expired.
Asserted: every renewed certificate is signed by the new intermediate and chains to the same root; after
every restart each client's new lines reach the server; no TLS or authentication error in any rsyslogd's
messages (a not-permitted client at the end shows that such errors are seen); 0 lost lines per client
(accepted by the client's rsyslog, never written by the server). Duplicates are allowed and reported.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest
from cryptography import x509

from conftest import BIN_DIR, REPO_ROOT, Vault, clean_env, free_port, host_params, issuance, run_renewer
from test_rsyslog_transport import render as render_role_template

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
RATE = 100  # lines per second per client (FINDINGS.md: the TLS hop is measured below 300/s)
# The certificates hosts start with (old intermediate) live this long, so that retire can be shown
# refused while they are valid and done once they expired, within the test.
FIRST_TTL = "100s"
SERVER = "logs.minibus.test"
CLIENTS = ("client1.minibus.test", "client2.minibus.test")
INTRUDER = "intruder.minibus.test"  # a valid certificate from the same PKI, but not a permitted peer
SEQ = re.compile(r"lab-seq-(c\d)-(\d{7})")
# What rsyslog (gtls or librelp) says when it refuses a peer or a handshake fails. Not matched, on
# purpose: a session broken because the other side restarted ("TLS record write failed ... push
# function", "session broken", "connection broken"), which every restart causes and RELP recovers.
TLS_REFUSAL = re.compile(r"(?i)(handshake|not permitted|not authori[sz]ed|authentication|auth error|certificate|x509|"
                         r"peer name|untrusted|verif)")
SETTLE = 5  # seconds of traffic between two renewals
WAIT = 90  # seconds: how long to wait for an event before calling it missing (never asserted as a time)


# --- the role's rsyslog configuration ---------------------------------------------------------

def render_rsyslog_confs(hosts):
    """The role's minibus-tls.conf.j2 for each host, rendered with the role's defaults (the transport's
    test renders it the same way), checked to be the RELP transport (the role's default)."""
    for host, variables in hosts:
        text = render_role_template("minibus-tls.conf.j2", **variables)
        expected = 'type="imrelp"' if host.role == "server" else 'type="omrelp"'
        assert expected in text, "the role's default transport is not RELP: %s" % host.snippet
        with open(host.snippet, "w") as handle:
            handle.write(text)


def role_vars(host, port):
    """What the role's variables are for this host (inventory + the role's computed paths)."""
    common = {
        "minibus_certs_rsyslog_port": port,
        "minibus_certs_tls_dir": host.tls_dir,
        "__minibus_certs_trust_anchor_path": host.trust_anchor,
        "minibus_certs_rsyslog_remote_log": host.remote_log,
    }
    if host.role == "server":
        common.update(minibus_certs_rsyslog_role="server", minibus_certs_rsyslog_permitted_peers=list(CLIENTS))
    else:
        common.update(minibus_certs_rsyslog_role="client", minibus_certs_rsyslog_server_address="127.0.0.1",
                      minibus_certs_rsyslog_server_name=SERVER)
    return common


def main_conf(host, snippet, inject_port):
    """The host's rsyslog.conf around the role's snippet: a work directory, internal messages to a
    file; on a client a local TCP input whose accepted lines are written before the snippet forwards
    them; on the server, its own messages to a file (remote lines go to the snippet's ruleset)."""
    lines = ['global(workDirectory="%s" processInternalMessages="on" maxMessageSize="8k")' % host.work,
             'template(name="lab_msg" type="string" string="%msg%\\n")']
    if host.role == "client":
        lines += ['module(load="imptcp")',
                  'input(type="imptcp" port="%d" address="127.0.0.1")' % inject_port,
                  'if $msg contains "lab-seq-" then {',
                  '  action(type="omfile" file="%s" template="lab_msg")' % host.accepted_log,
                  '} else {',
                  '  action(type="omfile" file="%s" template="RSYSLOG_FileFormat")' % host.internal_log,
                  '}']
    else:
        lines += ['action(type="omfile" file="%s" template="RSYSLOG_FileFormat")' % host.internal_log]
    lines += ['include(file="%s")' % snippet]
    return "\n".join(lines) + "\n"


# --- hosts ------------------------------------------------------------------------------------

class Host(object):
    def __init__(self, work, name, role):
        self.name = name
        self.role = role
        self.dir = os.path.join(work, name)
        self.tls_dir = os.path.join(self.dir, "tls")
        self.work = os.path.join(self.dir, "rsyslog-work")
        for d in (self.dir, self.tls_dir, self.work):
            os.makedirs(d)
        self.trust_anchor = os.path.join(self.dir, "trust-anchor.pem")
        self.remote_log = os.path.join(self.dir, "remote.log")
        self.accepted_log = os.path.join(self.dir, "accepted.log")
        self.internal_log = os.path.join(self.dir, "rsyslog-internal.log")
        self.stderr_log = os.path.join(self.dir, "rsyslogd.stderr")
        self.conf = os.path.join(self.dir, "rsyslog.conf")
        self.snippet = os.path.join(self.dir, "10-minibus-tls.conf")
        self.renewer_config = os.path.join(self.dir, "renewer.json")
        self.proc = None

    @property
    def fullchain(self):
        return os.path.join(self.tls_dir, "fullchain.pem")

    def certificate(self):
        with open(os.path.join(self.tls_dir, "cert.pem"), "rb") as handle:
            return x509.load_pem_x509_certificate(handle.read())

    def identity(self, vault):
        """AppRole, role id and PKI role as site.yml gives them by inventory group."""
        if self.role == "server":
            return dict(approle_name="minibus-log-server", role_id="minibus/csr-log-server", role_name="minibus-log-server")
        return dict(approle_name=vault.approle_name, role_id=vault.role_id, role_name="minibus-server")

    def renewer_options(self, vault, ttl):
        """renewer.json as roles/minibus_certs/templates/renewer.json.j2 writes it."""
        options = dict(url=vault.url, ca_cert=vault.ca_cert, common_name=self.name, alt_names=[], ttl=ttl,
                       method="sign", key_type="ec", key_bits=256, subject={"state": "rengthining", "locality": "iberty"},
                       engine_mount_point="pki_int", retries=1, timeout=10,
                       cert_path=os.path.join(self.tls_dir, "cert.pem"), key_path=os.path.join(self.tls_dir, "key.pem"),
                       chain_path=os.path.join(self.tls_dir, "chain.pem"), fullchain_path=self.fullchain,
                       trust_anchor_path=self.trust_anchor, secret_id_store=os.path.join(self.dir, "state", "secret-id.json"),
                       stamp_path=os.path.join(self.dir, "state", "renewed"))
        options.update(self.identity(vault))
        return options

    def bootstrap(self, vault):
        """The role's first run: vault_pki_issue with a wrapped secret id the broker minted for this host's AppRole."""
        os.makedirs(os.path.join(self.dir, "state"))
        ident = self.identity(vault)
        wrapped = vault.api("POST", "auth/approle/role/%s/secret-id" % ident["approle_name"], token=vault.broker_token,
                            json_body={}, wrap_ttl="60s")["wrap_info"]["token"]
        options = self.renewer_options(vault, FIRST_TTL)
        params = host_params(vault, self.dir, secret_id_wrapping_token=wrapped, **options)
        params.pop("stamp_path")
        result = issuance.ensure_certificate(params)
        assert result["issued"] and result["secret_id_rotated"], result
        # the renewer's own config: the production lifetime from now on
        with open(self.renewer_config, "w") as handle:
            json.dump(self.renewer_options(vault, "1h"), handle)

    def renew(self):
        out = run_renewer(self.renewer_config, force=True)
        assert out.returncode == 0, "renewer for %s: %s%s" % (self.name, out.stdout, out.stderr)

    def write_conf(self, inject_port):
        with open(self.conf, "w") as handle:
            handle.write(main_conf(self, self.snippet, inject_port))
        check = subprocess.run([RSYSLOGD, "-N1", "-f", self.conf], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, check=False)
        assert check.returncode == 0, "rsyslogd -N1 refused %s: %s" % (self.conf, check.stdout)

    def start(self):
        with open(self.stderr_log, "a") as err:
            self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", self.conf, "-i", os.path.join(self.dir, "rsyslogd.pid")],
                                         stdout=subprocess.DEVNULL, stderr=err)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self):
        """What minibus-certs-reload.service does after a renewal: systemctl try-restart rsyslog."""
        self.stop()
        self.start()

    def messages(self):
        text = ""
        for path in (self.internal_log, self.stderr_log):
            if os.path.exists(path):
                with open(path) as handle:
                    text += handle.read()
        return text


# --- traffic ----------------------------------------------------------------------------------

class Sender(threading.Thread):
    """Sequence-numbered lines at a steady rate into a client's local input; reconnects when the
    client's rsyslog restarts (lines refused then were never accepted, so they do not count)."""

    def __init__(self, tag, port):
        threading.Thread.__init__(self, daemon=True)
        self.tag = tag
        self.port = port
        self.sent = 0
        self.stopping = threading.Event()

    def run(self):
        start = time.time()
        sock = None
        while not self.stopping.is_set():
            pause = start + self.sent / float(RATE) - time.time()
            if pause > 0:
                time.sleep(pause)
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), 2)
                sock.sendall(("<14>1 - lab - - - - lab-seq-%s-%07d\n" % (self.tag, self.sent)).encode("ascii"))
                self.sent += 1
            except OSError:
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.05)
        if sock is not None:
            sock.close()


def _seqs(path, tag):
    found = []
    if os.path.exists(path):
        with open(path) as handle:
            for line in handle:
                match = SEQ.search(line)
                if match and match.group(1) == tag:
                    found.append(int(match.group(2)))
    return found


def _wait_for(what, predicate, seconds=WAIT):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("%s did not happen" % what)


def _wait_port(port):
    """A listener on port, seen with ss: a bare TCP connect to a TLS port would itself log a handshake error."""
    def listening():
        out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port], stdout=subprocess.PIPE, universal_newlines=True,
                             check=False).stdout
        return bool(out.strip())
    _wait_for("a listener on port %d" % port, listening)


# --- PKI checks -------------------------------------------------------------------------------

def _issuer_pem(vault, issuer_id):
    return vault.api("GET", "pki_int/issuer/%s" % issuer_id)["data"]["certificate"]


def _default_issuer(vault):
    return vault.api("GET", "pki_int/config/issuers")["data"]["default"]


def assert_signed_by(host, intermediate_pem, root_path):
    """host's certificate is signed by this intermediate, and its fullchain verifies against the pinned root."""
    cert = host.certificate()
    intermediate = x509.load_pem_x509_certificate(intermediate_pem.encode("ascii"))
    cert.verify_directly_issued_by(intermediate)
    out = subprocess.run(["openssl", "verify", "-CAfile", root_path, "-untrusted", host.fullchain,
                          os.path.join(host.tls_dir, "cert.pem")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, check=False)
    assert out.returncode == 0, "%s: %s" % (host.name, out.stdout)
    return cert


def ca_rotate(vault, step):
    return subprocess.run(
        [os.path.join(BIN_DIR, "ansible-playbook"), "-i", "localhost,", os.path.join(REPO_ROOT, "playbooks", "ca_rotate.yml"),
         "-e", "minibus_ca_step=%s" % step, "-e", "minibus_vault_ca_cert=%s" % vault.ca_cert],
        check=False, env=clean_env(VAULT_ADDR=vault.url, VAULT_TOKEN=vault.root_token), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, universal_newlines=True, timeout=300)


def _failure_msg(output):
    found = re.findall(r'"msg": "([^"]*)"', output)
    return found[-1] if found else output[-2000:]


# --- the lab ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lab_vault():
    """A Vault of this test's own: rotate and retire change the PKI every other test uses."""
    directory = tempfile.mkdtemp(prefix="minibus-rotation-bao-")
    server = Vault(directory)
    try:
        server.start()
        server.bootstrap()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def lab(lab_vault, tmp_path):
    work = str(tmp_path)
    root_path = os.path.join(lab_vault.dir, "root-ca.pem")
    hosts = [Host(work, SERVER, "server")] + [Host(work, name, "client") for name in CLIENTS]
    for host in hosts:
        shutil.copyfile(root_path, host.trust_anchor)  # the role delivers the pinned root from the controller
        host.bootstrap(lab_vault)
    port = free_port()
    inject = {host.name: free_port() for host in hosts[1:]}
    render_rsyslog_confs([(h, role_vars(h, port)) for h in hosts])
    for host in hosts:
        host.write_conf(inject.get(host.name))
    try:
        yield dict(vault=lab_vault, root=root_path, server=hosts[0], clients=hosts[1:], hosts=hosts, port=port,
                   inject=inject, work=work)
    finally:
        for host in hosts:
            host.stop()


def test_rotation_under_traffic_worst_order(lab):
    vault, server, clients, root = lab["vault"], lab["server"], lab["clients"], lab["root"]
    tags = {host.name: "c%d" % (i + 1) for i, host in enumerate(clients)}

    server.start()
    _wait_port(lab["port"])
    for client in clients:
        client.start()
        _wait_port(lab["inject"][client.name])
    senders = {c.name: Sender(tags[c.name], lab["inject"][c.name]) for c in clients}
    for sender in senders.values():
        sender.start()

    def delivered_after(mark):
        """Every client has a line the server wrote that was sent after mark (the senders' counts then)."""
        return all(any(n >= mark[c.name] for n in _seqs(server.remote_log, tags[c.name])) for c in clients)

    def step_done(what):
        mark = {name: s.sent for name, s in senders.items()}
        _wait_for("lines sent after %s reaching the server from both clients" % what, lambda: delivered_after(mark))

    try:
        step_done("the start")
        old_issuer = _default_issuer(vault)
        old_pem = _issuer_pem(vault, old_issuer)
        old_certs = [assert_signed_by(h, old_pem, root) for h in lab["hosts"]]

        # 1. rotate: a new default issuer under the same root
        out = ca_rotate(vault, "rotate")
        assert out.returncode == 0, out.stdout[-3000:]
        new_issuer = _default_issuer(vault)
        assert new_issuer != old_issuer
        new_pem = _issuer_pem(vault, new_issuer)
        assert x509.load_pem_x509_certificate(new_pem.encode()).subject != x509.load_pem_x509_certificate(old_pem.encode()).subject
        step_done("the rotation")

        # 2. the worst order: server first (clients still old), then one client, later the other
        for host in [server] + list(clients):
            host.renew()
            assert_signed_by(host, new_pem, root)
            host.restart()
            if host is server:
                _wait_port(lab["port"])
            else:
                _wait_port(lab["inject"][host.name])
            step_done("renewing and restarting %s" % host.name)
            time.sleep(SETTLE)  # the mixed fleet carries traffic for a while before the next host renews
        for host in lab["hosts"]:  # nobody fell back to the old intermediate
            assert_signed_by(host, new_pem, root)

        # 3. retire: refused while the hosts' first certificates (old intermediate) are valid
        assert time.time() < min(c.not_valid_after_utc.timestamp() for c in old_certs), \
            "the first certificates expired before retire could be tried: raise FIRST_TTL"
        out = ca_rotate(vault, "retire")
        assert out.returncode != 0, "retire ran while certificates of the old intermediate were valid"
        refusal = _failure_msg(out.stdout)
        assert refusal.startswith("Not retired: %d certificate(s) signed by the old intermediate are valid until"
                                  % len(old_certs)), refusal
        assert "Traceback" not in out.stdout
        vault.api("GET", "pki_int/issuer/%s" % old_issuer)  # still there

        # ... and done once they have expired (waited for by their notAfter; traffic keeps flowing)
        last = max(c.not_valid_after_utc.timestamp() for c in old_certs)
        while time.time() <= last + 1:
            time.sleep(1)
        out = ca_rotate(vault, "retire")
        assert out.returncode == 0, _failure_msg(out.stdout)
        issuers = vault.api("LIST", "pki_int/issuers")["data"]["keys"]
        assert old_issuer not in issuers and new_issuer in issuers, issuers
        assert _default_issuer(vault) == new_issuer
        step_done("retiring the old intermediate")
    finally:
        for sender in senders.values():
            sender.stopping.set()
        for sender in senders.values():
            sender.join(10)

    # every accepted line reaches the server (RELP resends what was not acknowledged)
    def drained():
        return all(set(_seqs(c.accepted_log, tags[c.name])) <= set(_seqs(server.remote_log, tags[c.name])) for c in clients)
    try:
        _wait_for("the clients' queues draining", drained)
    except AssertionError:
        pass  # counted below, with the numbers
    report = []
    lost = {}
    for client in clients:
        tag = tags[client.name]
        accepted = set(_seqs(client.accepted_log, tag))
        received_list = _seqs(server.remote_log, tag)
        lost[client.name] = sorted(accepted - set(received_list))
        report.append("%s: sent %d, accepted by its rsyslog %d, written by the server %d, lost %d, duplicates %d"
                      % (client.name, senders[client.name].sent, len(accepted), len(set(received_list)),
                         len(lost[client.name]), len(received_list) - len(set(received_list))))
    print("\n".join(report))
    assert all(accepted_count for accepted_count in (len(_seqs(c.accepted_log, tags[c.name])) for c in clients))
    assert not any(lost.values()), "lost lines: %s (%s)" % (
        dict((k, v[:20]) for k, v in lost.items()), "; ".join(report))

    # 0 refused connections: no TLS or authentication error in any rsyslogd's messages
    errors = dict((h.name, [line for line in h.messages().splitlines() if TLS_REFUSAL.search(line)]) for h in lab["hosts"])
    assert not any(errors.values()), errors

    # ... and such an error is seen when it happens: a client with a valid certificate from the same
    # PKI whose name is not a permitted peer is refused by the server
    _intruder_is_refused(lab)


def _intruder_is_refused(lab):
    vault, server = lab["vault"], lab["server"]
    intruder = Host(lab["work"], INTRUDER, "client")
    shutil.copyfile(lab["root"], intruder.trust_anchor)
    intruder.bootstrap(vault)
    inject = free_port()
    render_rsyslog_confs([(intruder, role_vars(intruder, lab["port"]))])
    intruder.write_conf(inject)
    try:
        intruder.start()
        _wait_port(inject)
        sock = socket.create_connection(("127.0.0.1", inject), 2)
        sock.sendall(b"<14>1 - lab - - - - lab-seq-c9-0000000\n")
        sock.close()
        _wait_for("a TLS/authentication error in the server's messages for the intruder",
                  lambda: any(TLS_REFUSAL.search(line) for line in server.messages().splitlines()))
        assert _seqs(server.remote_log, "c9") == []
    finally:
        intruder.stop()
