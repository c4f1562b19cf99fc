# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""rsyslogd labs of real processes on this machine.

``Rsyslogd``: one rsyslogd around a rendered snippet (tests/reliability/test_rsyslog_transport.py).
``Host``: a lab host shared by tests/reliability/test_rotation_traffic.py, test_relp_no_restart.py and
bench/p5_delivery.py (one copy), described below. Plain Python: no pytest here.

Host directories as the role lays them out: the log server ``logs.minibus.test`` (log-server AppRole and
PKI role) and permitted clients (client AppRole and PKI role), each bootstrapped the way the role's first
run does (a wrapped secret id from the broker, vault_pki_issue's core) and renewed by the real renewer from
its renewer.json. One real rsyslogd per host, its TLS configuration rendered from the role's own template
(minibus-tls.conf.j2) pointing at root's published copies of that host's fullchain and key (the renewer's
--publish after every renewal, as the unit's ExecStopPost does) and the pinned Root CA; everything on
loopback, peers named by their certificates (the clients target 127.0.0.1 and check the server's
certificate name). Clients take sequence-numbered lines on a local TCP input and write every line they
accepted to a file before the role's snippet forwards it: accepted against written is the TLS hop.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess

from cryptography import x509

from labs.hosts import host_params, issuance, run_publish, run_renewer
from labs.role_template import render as render_role_template
from labs.senders import read_text, wait_for

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
SERVER = "logs.minibus.test"
CLIENTS = ("client1.minibus.test", "client2.minibus.test")
# What rsyslog (gtls or librelp) says when it refuses a peer or a handshake fails. Not matched, on
# purpose: a session broken because the other side restarted ("TLS record write failed ... push
# function", "session broken", "connection broken"), which every restart causes and RELP recovers.
TLS_REFUSAL = re.compile(r"(?i)(handshake|not permitted|not authori[sz]ed|authentication|auth error|certificate|x509|"
                         r"peer name|untrusted|verif)")


def _write_text(path, data, mode=0o600):
    with open(path, "w") as handle:
        handle.write(data)
    os.chmod(path, mode)
    return path


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


def role_vars(host, port, permitted=CLIENTS):
    """What the role's variables are for this host (inventory + the role's computed paths)."""
    common = {
        "minibus_certs_rsyslog_port": port,
        "minibus_certs_tls_dir": host.tls_dir,
        "minibus_certs_published_dir": host.published_dir,
        "__minibus_certs_trust_anchor_path": host.trust_anchor,
        "minibus_certs_rsyslog_remote_log": host.remote_log,
    }
    if host.role == "server":
        common.update(minibus_certs_rsyslog_role="server", minibus_certs_rsyslog_permitted_peers=list(permitted))
    else:
        common.update(minibus_certs_rsyslog_role="client", minibus_certs_rsyslog_server_address="127.0.0.1",
                      minibus_certs_rsyslog_server_name=SERVER)
    return common


def main_conf(host, snippet, inject_port=None, syslog_socket=None):
    """The host's rsyslog.conf around the role's snippet: a work directory, internal messages to a
    file; on a client a local input whose accepted lines are written before the snippet forwards
    them (a TCP port, or with syslog_socket the socket an application's syslog(3) writes to, as where
    rsyslog owns /dev/log: senders.SyslogSender); on the server, its own messages to a file (remote
    lines go to the snippet's ruleset)."""
    lines = ['global(workDirectory="%s" processInternalMessages="on" maxMessageSize="8k")' % host.work,
             'template(name="lab_msg" type="string" string="%msg%\\n")']
    if host.role == "client":
        if syslog_socket:
            # not the machine's /dev/log (SysSock.Use off); rate limit as Debian's rsyslog.conf leaves it
            lines += ['module(load="imuxsock" SysSock.Use="off")',
                      'input(type="imuxsock" Socket="%s")' % syslog_socket]
        else:
            lines += ['module(load="imptcp")',
                      'input(type="imptcp" port="%d" address="127.0.0.1")' % inject_port]
        lines += ['if $msg contains "lab-seq-" then {',
                  '  action(type="omfile" file="%s" template="lab_msg")' % host.accepted_log,
                  '} else {',
                  '  action(type="omfile" file="%s" template="RSYSLOG_FileFormat")' % host.internal_log,
                  '}']
    else:
        lines += ['action(type="omfile" file="%s" template="RSYSLOG_FileFormat")' % host.internal_log]
    lines += ['include(file="%s")' % snippet]
    return "\n".join(lines) + "\n"


# --- one rsyslogd around a snippet ------------------------------------------------------------

def stop_process(proc, seconds=30):
    """SIGTERM (what systemctl stop sends), SIGKILL after seconds; nothing if it is not running."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Rsyslogd(object):
    """One rsyslogd in the foreground: the rendered snippet included from a small wrapper that gives
    it a work directory, an internal log, and (clients) a TCP input taking the test's lines plus a
    file of every line the client accepted."""

    def __init__(self, directory, name, snippet, inject_port=None):
        self.dir = os.path.join(directory, name)
        os.makedirs(os.path.join(self.dir, "work"))
        self.snippet = _write_text(os.path.join(self.dir, "minibus-tls.conf"), snippet, 0o644)
        self.internal = os.path.join(self.dir, "internal.log")
        self.accepted = os.path.join(self.dir, "accepted.log")
        self.pidfile = os.path.join(self.dir, "rsyslogd.pid")
        lines = ['global(workDirectory="%s" processInternalMessages="on")' % os.path.join(self.dir, "work"),
                 'template(name="msgonly" type="string" string="%msg%\\n")']
        if inject_port:
            lines += ['module(load="imptcp")',
                      'input(type="imptcp" port="%d" address="127.0.0.1")' % inject_port,
                      ':msg, contains, "seq-" action(type="omfile" file="%s" template="msgonly")' % self.accepted]
        lines += ['syslog.* action(type="omfile" file="%s")' % self.internal,
                  'include(file="%s")' % self.snippet]
        self.conf = _write_text(os.path.join(self.dir, "rsyslog.conf"), "\n".join(lines) + "\n", 0o644)
        check = subprocess.run([RSYSLOGD, "-N1", "-f", self.conf], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, check=False)
        assert check.returncode == 0, check.stdout
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", self.conf, "-i", self.pidfile],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)

    def stop(self):
        stop_process(self.proc)

    def restart(self):
        self.stop()
        self.start()

    def internal_text(self):
        return read_text(self.internal)


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), 0.5).close()
        return True
    except OSError:
        return False


def sessions(port):
    """Client ends (address:port) of the established TCP sessions to 127.0.0.1:port."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "( dport = :%d )" % port],
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    return sorted(line.split()[-2] for line in out.splitlines() if line.strip())


# --- hosts ------------------------------------------------------------------------------------

class Host(object):
    """One host's directory, renewer config and rsyslogd. first_ttl: the certificate the bootstrap issues;
    ttl: what the renewer's config asks for from then on."""

    def __init__(self, work, name, role, first_ttl="1h", ttl="1h"):
        self.name = name
        self.role = role
        self.first_ttl = first_ttl
        self.ttl = ttl
        self.dir = os.path.join(work, name)
        self.tls_dir = os.path.join(self.dir, "tls")
        self.published_dir = os.path.join(self.dir, "published")  # root's copies, what rsyslog reads
        self.work = os.path.join(self.dir, "rsyslog-work")
        for d in (self.dir, self.tls_dir, self.work):
            os.makedirs(d)
        self.trust_anchor = os.path.join(self.dir, "trust-anchor.pem")
        self.remote_log = os.path.join(self.dir, "remote.log")
        self.accepted_log = os.path.join(self.dir, "accepted.log")
        self.syslog_socket = os.path.join(self.dir, "log.sock")  # a client's /dev/log (senders.SyslogSender)
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
                       extended_key_usage=["serverAuth" if self.role == "server" else "clientAuth"],
                       publish={"dir": self.published_dir,
                                "key_usage": "serverAuth" if self.role == "server" else "clientAuth"})
        options.update(self.identity(vault))
        return options

    def bootstrap(self, vault):
        """The role's first run: vault_pki_issue with a wrapped secret id the broker minted for this host's AppRole."""
        os.makedirs(os.path.join(self.dir, "state"))
        ident = self.identity(vault)
        wrapped = vault.api("POST", "auth/minibus-bootstrap/role/%s/secret-id" % ident["approle_name"], token=vault.broker_token,
                            json_body={}, wrap_ttl="60s")["wrap_info"]["token"]
        options = self.renewer_options(vault, self.first_ttl)
        params = host_params(vault, self.dir, secret_id_wrapping_token=wrapped, **options)
        result = issuance.ensure_certificate(params)
        assert result["issued"] and result["secret_id_rotated"], result
        # the renewer's own config: its lifetime from now on
        with open(self.renewer_config, "w") as handle:
            json.dump(self.renewer_options(vault, self.ttl), handle)
        self.publish()  # the role's publish step

    def renew(self, force=True):
        """One renewer run (the timer's, or --force) and root's publish after it (the unit's ExecStopPost);
        returns the renewer's output. With the RELP transport this is the whole renewal: nothing restarts
        rsyslog (librelp reads the published certificate chain and key from disk for every new session,
        docs/design.md); the next session presents the new certificate."""
        out = run_renewer(self.renewer_config, force=force)
        assert out.returncode == 0, "renewer for %s: %s%s" % (self.name, out.stdout, out.stderr)
        self.publish()
        return out

    def publish(self):
        out = run_publish(self.renewer_config)
        assert out.returncode == 0 and out.stdout.startswith(("minibus-certs-renew: published:",
                                                              "minibus-certs-renew: unchanged:")), \
            "publish for %s: %s%s" % (self.name, out.stdout, out.stderr)
        return out

    def write_conf(self, inject_port=None, syslog_socket=None):
        with open(self.conf, "w") as handle:
            handle.write(main_conf(self, self.snippet, inject_port, syslog_socket))
        check = subprocess.run([RSYSLOGD, "-N1", "-f", self.conf], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True, check=False)
        assert check.returncode == 0, "rsyslogd -N1 refused %s: %s" % (self.conf, check.stdout)

    def start(self):
        with open(self.stderr_log, "a") as err:
            self.proc = subprocess.Popen([RSYSLOGD, "-n", "-f", self.conf, "-i", os.path.join(self.dir, "rsyslogd.pid")],
                                         stdout=subprocess.DEVNULL, stderr=err)

    def stop(self):
        stop_process(self.proc)

    @property
    def pid(self):
        """The running rsyslogd's pid, None when it is not running."""
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def restart(self):
        """systemctl try-restart rsyslog: what minibus-certs-session-bound.service does on the server every
        max session age (and root's publish after a renewal with the tcp transport only)."""
        self.stop()
        self.start()

    def messages(self):
        text = ""
        for path in (self.internal_log, self.stderr_log):
            if os.path.exists(path):
                with open(path) as handle:
                    text += handle.read()
        return text


# --- RELP on the wire -------------------------------------------------------------------------

# What a RELP client offers in its 'open' (librelp accepts any software name).
RELP_OFFER = "relp_version=0\nrelp_software=minibus-test\ncommands=syslog"


def relp_frame(txnr, command, data=""):
    """One RELP frame: transaction number, command, length of data, data."""
    data = data.encode("ascii")
    if not data:
        return b"%d %s 0\n" % (txnr, command.encode("ascii"))
    return b"%d %s %d %s\n" % (txnr, command.encode("ascii"), len(data), data)


def presented_certificate(port, client):
    """The certificate the server on port presents to a new session, seen by a TLS client with client's
    certificate and trust anchor that checks what omrelp checks (chain to the pinned root, validity, the
    server's name); then one RELP open and close, so the server logs an ordinary session. Raises
    ssl.SSLError when the handshake is refused (an expired server certificate: "certificate has expired")."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(client.trust_anchor)
    context.load_cert_chain(client.fullchain, os.path.join(client.tls_dir, "key.pem"))
    with socket.create_connection(("127.0.0.1", port), 10) as raw:
        with context.wrap_socket(raw, server_hostname=SERVER) as tls:
            der = tls.getpeercert(binary_form=True)
            tls.sendall(relp_frame(1, "open", RELP_OFFER))
            answer = b""
            while b"\n" not in answer:
                data = tls.recv(4096)
                if not data:
                    break
                answer += data
            tls.sendall(relp_frame(2, "close"))
            try:
                while tls.recv(4096):
                    pass
            except (ssl.SSLError, OSError):
                pass  # the server closes after its close reply
    assert answer.startswith(b"1 rsp ") and b" 200 " in answer, "the server did not open a RELP session: %r" % answer
    return x509.load_der_x509_certificate(der)


def wait_port(port):
    """A listener on port, seen with ss: a bare TCP connect to a TLS port would itself log a handshake error."""
    def listening():
        out = subprocess.run(["ss", "-Hltn", "sport = :%d" % port], stdout=subprocess.PIPE, universal_newlines=True,
                             check=False).stdout
        return bool(out.strip())
    wait_for(listening, "a listener on port %d" % port)
