# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Measure what rsyslog loses across the restarts a certificate rotation causes: TCP syslog over gtls
(omfwd -> imtcp) against RELP over TLS (omrelp -> imrelp), side by side, on real rsyslogd processes.

One server rsyslogd listens with both transports; two client rsyslogd instances (one per transport)
take sequence-numbered lines on a local TCP input, write each accepted line to a local file and
forward it. Lines are sent at a steady rate while the server (and later each client) is restarted, as
the role's reload unit does after a renewal with `tcp` and the session bound does on servers (with
`relp` a renewal restarts nothing: docs/design.md). Lost = accepted by the client's rsyslog
but never written by the server; duplicates are counted too. Also checked: whether SIGHUP makes an
omfwd client open a new TLS session (the no-restart design needs a reconnect to present a new
certificate).

Only loopback is used. Usage (root, rsyslog + rsyslog-gnutls + rsyslog-relp installed):
    python -m bench.delivery [--rate 300] [--seconds 30] [--server-restarts 2] [--client-restarts 1]
Prints a Markdown table; exits 0 whatever it measured (bench reports, never asserts).
"""

from __future__ import absolute_import, division, print_function

import argparse
import datetime
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labs.rsyslog import stop_process
from labs.senders import Sender, seqs
from labs.vault import free_port as _free_port

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
TRANSPORTS = ("gtls", "relp")


def _pem_write(path, data):
    with open(path, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def make_pki(directory):
    """A CA and two leaf certificates (server.test with serverAuth, client.test with clientAuth)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "delivery bench CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    _pem_write(os.path.join(directory, "ca.pem"), ca.public_bytes(serialization.Encoding.PEM))
    for name, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "%s.test" % name)]))
                .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.SubjectAlternativeName([x509.DNSName("%s.test" % name)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        _pem_write(os.path.join(directory, "%s.pem" % name), cert.public_bytes(serialization.Encoding.PEM))
        _pem_write(os.path.join(directory, "%s.key" % name), key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def _global(directory, work, name):
    return ('global(workDirectory="%s" processInternalMessages="on" maxMessageSize="8k"\n'
            '  DefaultNetstreamDriver="gtls" DefaultNetstreamDriverCAFile="%s/ca.pem"\n'
            '  DefaultNetstreamDriverCertFile="%s/%s.pem" DefaultNetstreamDriverKeyFile="%s/%s.key")\n'
            'template(name="msgonly" type="string" string="%%msg%%\\n")\n'
            % (work, directory, directory, name, directory, name))


def server_config(directory, ports):
    return _global(directory, os.path.join(directory, "work-server"), "server") + '''
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.Authmode="x509/name"
       StreamDriver.CheckExtendedKeyPurpose="on" PermittedPeer=["client.test"])
input(type="imtcp" port="%(gtls)d" address="127.0.0.1" ruleset="received")
module(load="imrelp")
input(type="imrelp" port="%(relp)d" address="127.0.0.1" ruleset="received" tls="on"
      tls.caCert="%(d)s/ca.pem" tls.myCert="%(d)s/server.pem" tls.myPrivKey="%(d)s/server.key"
      tls.authMode="name" tls.permittedPeer=["client.test"])
ruleset(name="received") {
  action(type="omfile" file="%(d)s/server.log" template="msgonly")
}
''' % {"gtls": ports["gtls"], "relp": ports["relp"], "d": directory}


def client_config(directory, transport, ports, inject_port):
    common = ('queue.type="LinkedList" queue.filename="q-%s" queue.saveOnShutdown="on" '
              'action.resumeRetryCount="-1" action.resumeInterval="1"' % transport)
    if transport == "gtls":
        forward = ('action(type="omfwd" target="127.0.0.1" port="%d" protocol="tcp" StreamDriver="gtls" '
                   'StreamDriverMode="1" StreamDriverAuthMode="x509/name" StreamDriverPermittedPeers="server.test" '
                   'StreamDriver.CheckExtendedKeyPurpose="on" %s)' % (ports["gtls"], common))
    else:
        forward = ('action(type="omrelp" target="127.0.0.1" port="%d" tls="on" tls.caCert="%s/ca.pem" '
                   'tls.myCert="%s/client.pem" tls.myPrivKey="%s/client.key" tls.authMode="name" '
                   'tls.permittedPeer=["server.test"] %s)' % (ports["relp"], directory, directory, directory, common))
    modules = 'module(load="omrelp")\n' if transport == "relp" else ""
    return _global(directory, os.path.join(directory, "work-%s" % transport), "client") + modules + '''
module(load="imptcp")
input(type="imptcp" port="%d" address="127.0.0.1" ruleset="forward")
ruleset(name="forward") {
  action(type="omfile" file="%s/accepted-%s.log" template="msgonly")
  %s
}
''' % (inject_port, directory, transport, forward)


class Rsyslogd:
    def __init__(self, directory, name, config):
        self.name = name
        self.conf = os.path.join(directory, "%s.conf" % name)
        self.pidfile = os.path.join(directory, "%s.pid" % name)
        self.log = os.path.join(directory, "%s.stderr" % name)
        os.makedirs(os.path.join(directory, "work-%s" % name), exist_ok=True)
        with open(self.conf, "w") as handle:
            handle.write(config)
        check = subprocess.run([RSYSLOGD, "-N1", "-f", self.conf], capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise SystemExit("rsyslogd -N1 refused %s: %s" % (self.conf, check.stderr.strip()))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", self.conf, "-i", self.pidfile],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))

    def stop(self):
        stop_process(self.proc, 20)

    def restart(self):
        self.stop()
        self.start()

    def hup(self):
        self.proc.send_signal(signal.SIGHUP)


def _wait_port(port, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("nothing listens on 127.0.0.1:%d" % port)


def _established(port):
    out = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%d )" % port],
                         capture_output=True, text=True, check=False).stdout
    return sorted(line.split()[-1] for line in out.splitlines() if line.strip())


def run(args):
    directory = tempfile.mkdtemp(prefix="minibus-delivery-")
    make_pki(directory)
    ports = {"gtls": _free_port(), "relp": _free_port()}
    inject = {t: _free_port() for t in TRANSPORTS}
    server = Rsyslogd(directory, "server", server_config(directory, ports))
    clients = {t: Rsyslogd(directory, t, client_config(directory, t, ports, inject[t])) for t in TRANSPORTS}
    rows = []
    try:
        server.start()
        for port in ports.values():
            _wait_port(port)
        for client in clients.values():
            client.start()
        for port in inject.values():
            _wait_port(port)

        # Does SIGHUP make an omfwd client open a new TLS session (needed to present a renewed cert)?
        _probe = socket.create_connection(("127.0.0.1", inject["gtls"]), 2)
        _probe.sendall(b"<14>1 - bench - - - - warmup\n")
        time.sleep(1.5)
        before = _established(ports["gtls"])
        clients["gtls"].hup()
        _probe.sendall(b"<14>1 - bench - - - - after-hup\n")
        time.sleep(1.5)
        after = _established(ports["gtls"])
        _probe.close()
        hup_reconnects = bool(before) and before != after

        senders = dict((t, Sender(inject[t], t, args.rate, count=int(args.rate * args.seconds))) for t in TRANSPORTS)
        for thread in senders.values():
            thread.start()
        events = (["server"] * args.server_restarts) + (["clients"] * args.client_restarts)
        gap = args.seconds / float(len(events) + 1) if events else 0
        for event in events:
            time.sleep(gap)
            if event == "server":
                server.restart()
            else:
                for client in clients.values():
                    client.restart()
        for thread in senders.values():
            thread.join()
        # Let queues drain (RELP resends what the server never acknowledged).
        deadline = time.time() + args.drain
        while time.time() < deadline:
            if all(len(set(seqs(os.path.join(directory, "server.log"), t)))
                   >= len(set(seqs(os.path.join(directory, "accepted-%s.log" % t), t))) for t in TRANSPORTS):
                break
            time.sleep(0.5)
        for transport in TRANSPORTS:
            accepted = set(seqs(os.path.join(directory, "accepted-%s.log" % transport), transport))
            received_list = seqs(os.path.join(directory, "server.log"), transport)
            received = set(received_list)
            rows.append({
                "transport": transport, "sent": senders[transport].sent, "accepted": len(accepted),
                "received": len(received), "lost_between_rsyslogs": len(accepted - received),
                "duplicates": len(received_list) - len(received),
            })
    finally:
        for client in clients.values():
            client.stop()
        server.stop()
        if not args.keep:
            shutil.rmtree(directory, ignore_errors=True)
    return rows, hup_reconnects


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--rate", type=int, default=300, help="lines per second per transport")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--server-restarts", type=int, default=2)
    parser.add_argument("--client-restarts", type=int, default=1)
    parser.add_argument("--drain", type=float, default=20, help="seconds to wait for queues to drain")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("run as root (rsyslogd)")
    rows, hup_reconnects = run(args)
    print("| transport | rate/s | seconds | server restarts | client restarts | sent | accepted by client rsyslog "
          "| received by server | lost between rsyslogs | duplicates |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| %s | %d | %g | %d | %d | %d | %d | %d | %d | %d |" % (
            row["transport"], args.rate, args.seconds, args.server_restarts, args.client_restarts, row["sent"],
            row["accepted"], row["received"], row["lost_between_rsyslogs"], row["duplicates"]))
    print("\nSIGHUP makes an omfwd gtls client open a new TLS session: %s" % ("yes" if hup_reconnects else "no"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
