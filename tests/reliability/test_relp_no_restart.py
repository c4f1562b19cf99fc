# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""With the RELP transport a renewal restarts nothing (docs/design.md): librelp (1.11, OpenSSL) loads the
host's certificate chain and key from disk for every new TLS session, on the server (imrelp) and the
client (omrelp) side; only the CA file is read once per process. Proven on the lab of real processes
(labs/rsyslog.py: the session's OpenBao over HTTPS, real renewer, one rsyslogd per host
from the role's minibus-tls.conf.j2).

The server and client1 start with short certificates (FIRST_TTL) and client1 streams numbered lines.
Both are renewed with the renewer's --force and no rsyslogd is restarted (pids checked throughout). Once
both original certificates have expired (their notAfter):
  (i) a new TLS session to the server, unchanged since before its renewal, is handed the renewed
      certificate (serial compared; a client checking validity as omrelp does would refuse the original
      one: "certificate has expired"), and a fresh client2 delivers its lines;
  (ii) only the server is restarted (what minibus-certs-session-bound does): client1, same process as
      before its renewal, opens a new session (another source port) and keeps delivering, so it presented
      its renewed certificate (the server refuses an expired one: test_rsyslog_transport's
      test_relp_refuses[expired]).
0 lines lost between the clients' rsyslogs and the server (accepted, never written), no TLS refusal in
any rsyslogd's messages.

The test fails without the re-read: with the renewal left out (verified by hand once, see
/work/notes/norestart.md of the change) step (i) fails with "certificate has expired", and if only the
server's certificate were re-read, (ii) fails on the server's "certificate expired" refusals of client1.
"""

from __future__ import absolute_import, division, print_function

import os
import shutil
import subprocess
import time

from labs.hosts import free_port
from labs.rsyslog import CLIENTS, SERVER, TLS_REFUSAL, Host, presented_certificate, render_rsyslog_confs, role_vars, \
    wait_port
from labs.senders import Sender, seqs, wait_for

FIRST_TTL = "100s"  # long enough to bootstrap three hosts and stream before the renewal on a loaded machine
RATE = 100  # lines per second


def _sessions(port):
    """Client source ports of the established sessions to 127.0.0.1:port."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "( dport = :%d )" % port], stdout=subprocess.PIPE,
                         universal_newlines=True, check=True).stdout
    return set(int(line.split()[-2].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip())


def test_relp_renewal_restarts_nothing(vault, tmp_path):
    work = str(tmp_path)
    root_path = os.path.join(vault.dir, "root-ca.pem")
    server = Host(work, SERVER, "server", first_ttl=FIRST_TTL)
    client1 = Host(work, CLIENTS[0], "client", first_ttl=FIRST_TTL)
    client2 = Host(work, CLIENTS[1], "client")
    hosts = [server, client1, client2]
    for host in hosts:
        shutil.copyfile(root_path, host.trust_anchor)
        host.bootstrap(vault)
    port = free_port()
    inject = {client1.name: free_port(), client2.name: free_port()}
    render_rsyslog_confs([(h, role_vars(h, port)) for h in hosts])
    for host in hosts:
        host.write_conf(inject.get(host.name))
    senders = []
    try:
        server.start()
        wait_port(port)
        client1.start()
        wait_port(inject[client1.name])
        sender1 = Sender(inject[client1.name], "c1", RATE)
        senders.append(sender1)
        sender1.start()

        def delivered(host, sender, what):
            mark = sender.sent
            wait_for(lambda: any(n >= mark for n in seqs(server.remote_log, sender.tag)),
                     "%s's lines sent after %s reaching the server" % (host.name, what))

        delivered(client1, sender1, "the start")
        session_before = _sessions(port)
        assert len(session_before) == 1, session_before
        pids = {server.name: server.pid, client1.name: client1.pid}
        old = {h.name: h.certificate() for h in (server, client1)}
        assert time.time() < min(c.not_valid_after_utc.timestamp() for c in old.values()), \
            "the first certificates expired before the renewal: raise FIRST_TTL"

        # the renewal: the renewer's --force, nothing else
        for host in (server, client1):
            host.renew()
            new = host.certificate()
            assert new.serial_number != old[host.name].serial_number
            assert new.not_valid_after_utc > old[host.name].not_valid_after_utc
        delivered(client1, sender1, "the renewals")

        # until both original certificates have expired; client1's session (opened with them) carries on
        last = max(c.not_valid_after_utc.timestamp() for c in old.values())
        while time.time() <= last + 2:
            time.sleep(1)
        assert {server.name: server.pid, client1.name: client1.pid} == pids, "an rsyslogd was restarted"
        delivered(client1, sender1, "the original certificates expired")

        # (i) the unchanged server process presents its renewed certificate to a new session
        presented = presented_certificate(port, client2)
        assert presented.serial_number == server.certificate().serial_number != old[server.name].serial_number
        client2.start()
        wait_port(inject[client2.name])
        sender2 = Sender(inject[client2.name], "c2", RATE)
        senders.append(sender2)
        sender2.start()
        delivered(client2, sender2, "client2's start")
        assert {server.name: server.pid, client1.name: client1.pid} == pids, "an rsyslogd was restarted"

        # (ii) the session bound restarts the server alone: client1 (not restarted) opens a new session
        server.restart()
        wait_port(port)
        delivered(client1, sender1, "the server's restart")
        delivered(client2, sender2, "the server's restart")
        assert client1.pid == pids[client1.name], "client1's rsyslogd was restarted"
        session_after = _sessions(port)
        assert session_after and not session_after & session_before, (session_before, session_after)
    except BaseException:
        for host in hosts:  # a failed step must not leave rsyslogd processes behind
            host.stop()
        raise
    finally:
        for sender in senders:
            sender.halt.set()
        for sender in senders:
            sender.join(10)

    try:
        wait_for(lambda: all(set(seqs(h.accepted_log, s.tag)) <= set(seqs(server.remote_log, s.tag))
                             for h, s in zip((client1, client2), senders)), "the clients' queues draining")
    except AssertionError:
        pass  # counted below, with the numbers
    finally:
        for host in hosts:
            host.stop()
    report, lost = [], {}
    for host, sender in zip((client1, client2), senders):
        accepted = set(seqs(host.accepted_log, sender.tag))
        written = seqs(server.remote_log, sender.tag)
        lost[host.name] = sorted(accepted - set(written))
        report.append("%s: sent %d, accepted %d, written %d, lost %d, duplicates %d" % (
            host.name, sender.sent, len(accepted), len(set(written)), len(lost[host.name]), len(written) - len(set(written))))
        assert accepted, "%s accepted nothing" % host.name
    print("\n".join(report))
    assert not any(lost.values()), "lost between the rsyslogs: %s (%s)" % (
        dict((k, v[:20]) for k, v in lost.items()), "; ".join(report))
    errors = dict((h.name, [line for line in h.messages().splitlines() if TLS_REFUSAL.search(line)]) for h in hosts)
    assert not any(errors.values()), errors
