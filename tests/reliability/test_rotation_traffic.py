# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Intermediate CA rotation under traffic, without a refused connection: the runbook (docs/runbooks.md), run on a lab of real processes.
(The lab itself, hosts, rsyslogd and senders, is labs/rsyslog.py and labs/senders.py, shared with bench/p5_delivery.py.)

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
ca_rotate.yml step=rotate; renew each host (renewer --force: with RELP that is the whole renewal, no
rsyslog restarts, librelp reads the certificate files for every new session) in the worst order: the
server first (the clients still on the old intermediate), then one client, later the other, and after
each renewal the server's rsyslog restarted once (what minibus-certs-session-bound does every max session
age), so that the mixed fleet meets in new sessions; ca_rotate.yml step=retire is refused while
certificates of the old intermediate are valid, and retires it once they have expired.
Asserted: every renewed certificate is signed by the new intermediate and chains to the same root; the
server presents its renewed certificate to a new session; after every server restart each client's new
lines reach the server; the clients' rsyslogds are never restarted; no TLS or authentication error in any
rsyslogd's messages (a not-permitted client at the end shows that such errors are seen); 0 lost lines
per client (accepted by the client's rsyslog, never written by the server). Duplicates are allowed and
reported.
"""

from __future__ import absolute_import, division, print_function

import os
import re
import shutil
import socket
import subprocess
import time

import pytest
from cryptography import x509

from labs.hosts import BIN_DIR, REPO_ROOT, clean_env, free_port
from labs.vault import bootstrapped_vault
from labs.rsyslog import CLIENTS, SERVER, TLS_REFUSAL, Host, presented_certificate, render_rsyslog_confs, role_vars, \
    wait_port as _wait_port
from labs.senders import Sender, seqs as _seqs, wait_for as _wait_for

RATE = 100  # lines per second per client (kept below 300/s, as in the delivery measurements)
# The certificates hosts start with (old intermediate) live this long, so that retire can be shown
# refused while they are valid and done once they expired, within the test.
FIRST_TTL = "100s"
INTRUDER = "intruder.minibus.test"  # a valid certificate from the same PKI, but not a permitted peer
SETTLE = 5  # seconds of traffic between two renewals


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
    with bootstrapped_vault("minibus-rotation-bao-") as server:
        yield server


@pytest.fixture
def lab(lab_vault, tmp_path):
    work = str(tmp_path)
    root_path = os.path.join(lab_vault.dir, "root-ca.pem")
    hosts = [Host(work, SERVER, "server", first_ttl=FIRST_TTL)]
    hosts += [Host(work, name, "client", first_ttl=FIRST_TTL) for name in CLIENTS]
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
    senders = {c.name: Sender(lab["inject"][c.name], tags[c.name], RATE) for c in clients}
    for sender in senders.values():
        sender.start()

    def delivered_after(mark):
        """Every client has a line the server wrote that was sent after mark (the senders' counts then)."""
        return all(any(n >= mark[c.name] for n in _seqs(server.remote_log, tags[c.name])) for c in clients)

    def step_done(what):
        mark = {name: s.sent for name, s in senders.items()}
        _wait_for(lambda: delivered_after(mark), "lines sent after %s reaching the server from both clients" % what)

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

        # 2. the worst order: server first (clients still old), then one client, later the other; each
        # renewal is the renewer alone, and the session bound's server restart after it opens new sessions
        # between the mixed fleet
        client_pids = dict((c.name, c.pid) for c in clients)
        for host in [server] + list(clients):
            host.renew()
            assert_signed_by(host, new_pem, root)
            step_done("renewing %s" % host.name)
            server.restart()
            _wait_port(lab["port"])
            step_done("the server's restart after renewing %s" % host.name)
            time.sleep(SETTLE)  # the mixed fleet carries traffic for a while before the next host renews
        assert dict((c.name, c.pid) for c in clients) == client_pids, "a client's rsyslogd was restarted"
        for host in lab["hosts"]:  # nobody fell back to the old intermediate
            assert_signed_by(host, new_pem, root)
        # the server hands its renewed certificate (new intermediate) to new sessions
        presented = presented_certificate(lab["port"], clients[0])
        assert presented.serial_number == server.certificate().serial_number
        presented.verify_directly_issued_by(x509.load_pem_x509_certificate(new_pem.encode("ascii")))

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
            sender.halt.set()
        for sender in senders.values():
            sender.join(10)

    # every accepted line reaches the server (RELP resends what was not acknowledged)
    def drained():
        return all(set(_seqs(c.accepted_log, tags[c.name])) <= set(_seqs(server.remote_log, tags[c.name])) for c in clients)
    try:
        _wait_for(drained, "the clients' queues draining")
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
    intruder = Host(lab["work"], INTRUDER, "client", first_ttl=FIRST_TTL)
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
        _wait_for(lambda: any(TLS_REFUSAL.search(line) for line in server.messages().splitlines()),
                  "a TLS/authentication error in the server's messages for the intruder")
        assert _seqs(server.remote_log, "c9") == []
    finally:
        intruder.stop()
