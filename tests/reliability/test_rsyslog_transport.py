# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The role's shipped rsyslog configuration (templates/minibus-tls.conf.j2, rendered by Ansible's
Templar with the role's defaults) on real rsyslogd processes over loopback, with certificates issued
by the real OpenBao dev server of conftest.py (over HTTPS, PKI roles from vault_bootstrap.yml: log
servers get serverAuth only, clients clientAuth only; the pinned Root CA the bootstrap wrote).

- RELP over mutual TLS: a sequence-numbered stream crosses with the server restarted twice: 0 lost
  (duplicates are counted, allowed: RELP is at-least-once).
- Refused, nothing written on the server: an expired client certificate, a name the server does not
  permit, a client certificate from another CA, a client that does not trust the server's CA, a
  serverAuth-only client certificate (extended key usage: librelp checks it with OpenSSL only).
- Refused every time: 30 sessions of an attacker's program (lines sent right after the handshake)
  and 20+ reconnections of a real omrelp client, each with an unpermitted name and with a wrong
  extended key usage: not one acknowledgement, not one line written.
- TLS settings (tls.tlscfgcmd): TLS 1.2/1.3 with ECDHE and AEAD suites; TLS 1.0/1.1, CBC suites and
  TLS 1.3 suites outside the list are refused (openssl s_client).
- A log server presenting a clientAuth-only certificate with its name is refused by the clients
  (relp and tcp).
- The session bound: the session-bound service restarts rsyslog; the client's TLS session is closed
  and a new one (another source port) opened, lines keep flowing, 0 lost.
- The tcp transport (omfwd/imtcp over gtls) stays an option: one line crosses.

Only the foreign CA is made with `cryptography`: it stands for an attacker's CA, which Vault must
not be. Needs rsyslogd with rsyslog-gnutls and rsyslog-relp, and openssl (.ci/run installs them).
"""

from __future__ import absolute_import, division, print_function

import datetime
import glob
import os
import re
import socket
import ssl
import subprocess
import sys
import time

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labs.hosts import BIN_DIR, clean_env, free_port
from labs.role_template import ROLE, render
from labs.rsyslog import RELP_OFFER, RSYSLOGD, Rsyslogd, listening, relp_frame, sessions
from labs.senders import Sender, read_text, send_lines, seqs, wait_for

SERVER_NAME = "logs.minibus.test"
CLIENT_NAME = "client1.minibus.test"

pytestmark = pytest.mark.skipif(
    not os.path.exists(RSYSLOGD) or not glob.glob("/usr/lib/*/rsyslog/imrelp.so") + glob.glob("/usr/lib/rsyslog/imrelp.so"),
    reason="rsyslogd with imrelp is not installed (apt: rsyslog rsyslog-gnutls rsyslog-relp)")


# --- certificates -------------------------------------------------------------------------------

def _write(path, data, mode=0o600):
    with open(path, "w") as handle:
        handle.write(data)
    os.chmod(path, mode)
    return path


def issue(vault, directory, name, pki_role, common_name, ttl="1h"):
    """A key and certificate from Vault's PKI role; the fullchain file as the role writes it."""
    data = vault.api("POST", "pki_int/issue/%s" % pki_role,
                     json_body={"common_name": common_name, "ttl": ttl, "key_type": "ec", "key_bits": 256})["data"]
    os.makedirs(os.path.join(directory, name))
    return {
        "fullchain": _write(os.path.join(directory, name, "fullchain.pem"),
                            data["certificate"].strip() + "\n" + data["issuing_ca"].strip() + "\n", 0o644),
        "key": _write(os.path.join(directory, name, "key.pem"), data["private_key"].strip() + "\n"),
        "not_after": int(data["expiration"]),
    }


def foreign_pki(directory):
    """An attacker's CA and a client certificate with the permitted name and clientAuth."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, u"foreign Root CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLIENT_NAME)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(CLIENT_NAME)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    os.makedirs(os.path.join(directory, "foreign"))
    pem = serialization.Encoding.PEM
    return {
        "ca": _write(os.path.join(directory, "foreign", "ca.pem"), ca.public_bytes(pem).decode(), 0o644),
        "fullchain": _write(os.path.join(directory, "foreign", "fullchain.pem"),
                            (cert.public_bytes(pem) + ca.public_bytes(pem)).decode(), 0o644),
        "key": _write(os.path.join(directory, "foreign", "key.pem"), key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()),
    }


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(vault, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("rsyslog-pki"))
    anchor = os.path.join(vault.dir, "root-ca.pem")
    assert os.path.exists(anchor), "the bootstrap did not write the pinned Root CA"
    certs = {
        "anchor": anchor,
        "server": issue(vault, directory, "server", "minibus-log-server", SERVER_NAME),
        "client": issue(vault, directory, "client", "minibus-server", CLIENT_NAME),
        "unpermitted": issue(vault, directory, "unpermitted", "minibus-server", "intruder.minibus.test"),
        # the log servers' PKI role: serverAuth only, with a name the server permits
        "server_eku": issue(vault, directory, "server_eku", "minibus-log-server", CLIENT_NAME),
        "expired": issue(vault, directory, "expired", "minibus-server", CLIENT_NAME, ttl="2s"),
        "foreign": foreign_pki(directory),
    }
    wait_for(lambda: time.time() > certs["expired"]["not_after"] + 1, "the short certificate to expire", 30)
    return certs


def _tls_vars(directory, anchor, cert, port, transport, role):
    return dict(minibus_certs_rsyslog_transport=transport, minibus_certs_rsyslog_role=role,
                minibus_certs_rsyslog_port=port,
                # the files rsyslog opens: root's published copies (here the test PKI's own directory)
                minibus_certs_published_dir=os.path.dirname(cert["fullchain"]),
                __minibus_certs_trust_anchor_path=anchor,
                minibus_certs_rsyslog_permitted_peers=[CLIENT_NAME],
                minibus_certs_rsyslog_server_address="127.0.0.1",
                minibus_certs_rsyslog_server_name=SERVER_NAME,
                minibus_certs_rsyslog_remote_log=os.path.join(directory, "remote-%s.log" % transport))


class Lab(object):
    def __init__(self, directory, pki, transport):
        self.dir, self.pki, self.transport = directory, pki, transport
        self.port = free_port()
        self.remote_log = os.path.join(directory, "remote-%s.log" % transport)
        snippet = render("minibus-tls.conf.j2",
                         **_tls_vars(directory, pki["anchor"], pki["server"], self.port, transport, "server"))
        self.server = Rsyslogd(directory, "server-%s" % transport, snippet)
        self.clients = []

    def client(self, name, cert, anchor=None):
        inject = free_port()
        snippet = render("minibus-tls.conf.j2",
                         **_tls_vars(self.dir, anchor or self.pki["anchor"], cert, self.port, self.transport, "client"))
        client = Rsyslogd(self.dir, "%s-%s" % (name, self.transport), snippet, inject_port=inject)
        client.inject = inject
        client.start()
        self.clients.append(client)
        wait_for(lambda: listening(inject), "client %s's input" % name, 20)
        return client

    def start(self):
        self.server.start()
        wait_for(lambda: listening(self.port), "the server's listener", 20)

    def stop(self):
        for client in self.clients:
            client.stop()
        self.server.stop()


@pytest.fixture(scope="module")
def relp(pki, tmp_path_factory):
    lab = Lab(str(tmp_path_factory.mktemp("relp")), pki, "relp")
    lab.start()
    yield lab
    lab.stop()


# --- the rendered configuration -------------------------------------------------------------------

def test_relp_is_the_default_and_the_snippet_is_what_the_brief_says(pki, relp):
    with open(relp.server.snippet) as handle:
        server = handle.read()
    assert 'type="imrelp"' in server and 'tls="on"' in server and 'tls.authmode="name"' in server
    assert 'tls.cacert="%s"' % pki["anchor"] in server
    assert 'tls.mycert="%s"' % pki["server"]["fullchain"] in server
    assert 'tls.permittedpeer=["%s"]' % CLIENT_NAME in server
    assert 'tls.tlslib="openssl"' in server and "tls.prioritystring" not in server
    assert 'tls.tlscfgcmd="MinProtocol=TLSv1.2;' in server
    with open(os.path.join(ROLE, "defaults", "main.yml")) as handle:
        defaults = yaml.safe_load(handle)
    assert defaults["minibus_certs_rsyslog_transport"] == "relp"
    # the CA file is the pinned root alone; the certificate file carries the intermediate: the
    # streams below cross only because librelp sends the whole chain
    with open(pki["anchor"], "rb") as handle:
        anchor = x509.load_pem_x509_certificates(handle.read())
    assert len(anchor) == 1 and anchor[0].subject == anchor[0].issuer
    with open(pki["server"]["fullchain"], "rb") as handle:
        assert len(x509.load_pem_x509_certificates(handle.read())) == 2


# --- a) nothing lost across server restarts -----------------------------------------------------

def _drained(client, remote_log, tag):
    return lambda: set(seqs(client.accepted, tag)) <= set(seqs(remote_log, tag))


def test_relp_stream_survives_two_server_restarts(pki, relp):
    client = relp.client("stream", pki["client"])
    sender = Sender(client.inject, "a")
    sender.start()
    for restart in (1, 2):
        # each restart happens while lines are flowing: wait for new lines on the server first
        count = len(seqs(relp.remote_log, "a"))
        wait_for(lambda: len(seqs(relp.remote_log, "a")) > count + 200, "lines before restart %d" % restart)
        relp.server.restart()
    count = len(seqs(relp.remote_log, "a"))
    wait_for(lambda: len(seqs(relp.remote_log, "a")) > count + 200, "lines after the restarts")
    sender.halt.set()
    sender.join(10)
    wait_for(lambda: len(seqs(client.accepted, "a")) >= sender.sent, "the client to accept every line")
    wait_for(_drained(client, relp.remote_log, "a"), "the client's queue to drain")
    accepted = seqs(client.accepted, "a")
    received = seqs(relp.remote_log, "a")
    lost = set(accepted) - set(received)
    duplicates = len(received) - len(set(received))
    print("relp, 2 server restarts: sent %d, accepted %d, received %d, lost %d, duplicates %d"
          % (sender.sent, len(accepted), len(set(received)), len(lost), duplicates))
    assert len(set(accepted)) == sender.sent
    assert not lost, "lost between the rsyslogs: %s" % sorted(lost)[:20]


# --- b) refused clients ---------------------------------------------------------------------------

def _attempt(relp, name, cert, anchor=None, evidence=None):
    """Start a client and give it lines; wait until the refusal shows in the server's log (or, for a
    client that refuses the server, in its own log), or until the lines arrive."""
    offset = len(relp.server.internal_text())
    client = relp.client(name, cert, anchor)
    send_lines(client.inject, name, 5)
    wait_for(lambda: len(seqs(client.accepted, name)) == 5, "client %s to accept its lines" % name, 20)
    if evidence:
        # The server refuses each retry (3 of them, so a refusal that only sometimes happens shows);
        # a client that refuses the server disables its action after the first.
        side, text = evidence
        times = 3 if side == "server" else 1
        wait_for(lambda: (relp.server.internal_text()[offset:] if side == "server" else client.internal_text())
                 .count(text) >= times or seqs(relp.remote_log, name), "%r %d times in the %s's log" % (text, times, side), 60)
    return client


# What librelp 1.11 with OpenSSL says when it refuses (measured): the server for the first four, the
# client itself when it does not trust the server's certificate.
REFUSALS = {
    "expired": ("server", "authentication error 'certificate validation failed, certificate expired!'"),
    "unpermitted": ("server", "authentication error 'no permited name found'"),
    # the OpenSSL client sends its whole foreign chain; the server cannot verify it
    "foreign_cert": ("server", "err 19:self-signed certificate in certificate chain"),
    "foreign_trust": ("client", "err 20:unable to get local issuer certificate"),
    # extended key usage: a serverAuth-only certificate with a permitted name
    "server_eku": ("server", "err 26:unsuitable certificate purpose"),
}


@pytest.mark.parametrize("case", ["expired", "unpermitted", "foreign_cert", "foreign_trust", "server_eku"])
def test_relp_refuses(pki, relp, case):
    anchor = None
    cert = pki.get(case)
    if case == "foreign_cert":
        cert = pki["foreign"]
    elif case == "foreign_trust":
        cert, anchor = pki["client"], pki["foreign"]["ca"]
    name = case.replace("_", "")
    client = _attempt(relp, name, cert, anchor, REFUSALS[case])
    try:
        assert seqs(relp.remote_log, name) == [], "the server wrote lines of a refused client (%s)" % case
        side, text = REFUSALS[case]
        log = relp.server.internal_text() if side == "server" else client.internal_text()
        assert text in log, "no %r in the %s's log: refused for another reason?" % (text, side)
    finally:
        client.stop()


# --- b2) refused again and again: the rsyslog ossl netstream driver let an unpermitted name in on
# 6 of 10 attempts (measured with 8.2302); librelp's OpenSSL code is different, this proves it ---------

def relp_session(port, cert, anchor, tag, count):
    """One RELP session as an attacker's own program opens it: TLS with cert, then 'open' and count
    syslog frames sent at once, without waiting for the handshake's verdict (with TLS 1.3 the client
    finishes its handshake before the server has checked its certificate). Returns the transaction
    numbers the server acknowledged with 200 (1 is the open)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.load_verify_locations(anchor)
    context.load_cert_chain(cert["fullchain"], cert["key"])
    frames = [relp_frame(1, "open", RELP_OFFER)]
    frames += [relp_frame(2 + i, "syslog", "<14>1 - attacker - - - - seq-%s-%07d" % (tag, i)) for i in range(count)]
    answers = b""
    try:
        with socket.create_connection(("127.0.0.1", port), 10) as raw:
            with context.wrap_socket(raw) as tls:
                tls.sendall(b"".join(frames))
                while answers.count(b" rsp ") < count + 1:
                    data = tls.recv(4096)
                    if not data:
                        break
                    answers += data
    except (ssl.SSLError, OSError):
        pass  # refused (alert, reset or closed): what the callers count is the acknowledgements
    return [int(n) for n in re.findall(rb"(?:^|\n)(\d+) rsp \d+ 200", answers)]


ATTEMPTS = 30           # sessions of the attacker's program per identity
RSYSLOG_ATTEMPTS = 20   # further connection attempts of a real omrelp client with the same identity


@pytest.mark.parametrize("case", ["unpermitted", "server_eku"])
def test_relp_refuses_every_one_of_repeated_attempts(pki, relp, case):
    """A name the server does not permit, and a permitted name on a serverAuth-only certificate:
    30 sessions of a program that sends its lines right after its side of the handshake, then a real
    omrelp client reconnecting at least 20 times; not one acknowledgement, not one line written."""
    text = REFUSALS[case][1]
    tag = "again" + case.replace("_", "")
    offset = len(relp.server.internal_text())
    acked = []
    for dummy in range(ATTEMPTS):
        acked += relp_session(relp.port, pki[case], pki["anchor"], tag, 3)
    # rsyslog writes its refusal messages asynchronously: the last one may trail the session's end.
    wait_for(lambda: relp.server.internal_text()[offset:].count(text) >= ATTEMPTS,
             "%d sessions refused with %r" % (ATTEMPTS, text), 30)
    client = relp.client(tag + "rs", pki[case])
    try:
        send_lines(client.inject, tag + "rs", 5)
        wait_for(lambda: relp.server.internal_text()[offset:].count(text) >= ATTEMPTS + RSYSLOG_ATTEMPTS
                 or seqs(relp.remote_log, tag + "rs"), "%d more refusals of the omrelp client" % RSYSLOG_ATTEMPTS, 180)
    finally:
        client.stop()
    # The permitted client's session, after every attempt: anything the server had accepted before is
    # written before this line (one main queue, in order). It also shows the attacker's program works.
    assert relp_session(relp.port, pki["client"], pki["anchor"], tag + "ok", 1) == [1, 2]
    wait_for(lambda: seqs(relp.remote_log, tag + "ok") == [0], "the permitted client's line")
    assert acked == [], "the server acknowledged frames of a refused certificate: %s" % acked
    assert seqs(relp.remote_log, tag) == [] and seqs(relp.remote_log, tag + "rs") == [], \
        "the server wrote lines of a refused certificate (%s)" % case


# --- b3) TLS versions and suites on the RELP port (tls.tlscfgcmd) ----------------------------------

def _s_client(relp, pki, *args):
    # SECLEVEL=0 lets this client offer what OpenSSL 3 would not, so a refusal is the server's
    return subprocess.run(
        ["openssl", "s_client", "-connect", "127.0.0.1:%d" % relp.port, "-CAfile", pki["anchor"],
         "-cert", pki["client"]["fullchain"], "-cert_chain", pki["client"]["fullchain"], "-key", pki["client"]["key"],
         "-verify_return_error", "-brief"]
        + list(args), input="", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
        check=False, timeout=60)


@pytest.mark.parametrize("args, protocol", [(("-tls1_2",), "TLSv1.2"), (("-tls1_3",), "TLSv1.3")])
def test_relp_offers_tls_1_2_and_1_3_with_aead(pki, relp, args, protocol):
    out = _s_client(relp, pki, *args)
    assert "CONNECTION ESTABLISHED" in out.stdout and "Protocol version: %s" % protocol in out.stdout, out.stdout
    suite = re.search(r"Ciphersuite: (\S+)", out.stdout).group(1)
    assert re.search(r"ECDHE-ECDSA-(AES\d+-GCM|CHACHA20-POLY1305)|TLS_(AES_\d+_GCM|CHACHA20_POLY1305)_SHA\d+$", suite), suite


@pytest.mark.parametrize("args", [
    ("-tls1", "-cipher", "ALL:@SECLEVEL=0"),
    ("-tls1_1", "-cipher", "ALL:@SECLEVEL=0"),
    ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0"),       # CBC, SHA-1
    ("-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-SHA384"),                # CBC
    ("-tls1_3", "-ciphersuites", "TLS_AES_128_CCM_SHA256"),             # not in Ciphersuites
], ids=["tls1.0", "tls1.1", "cbc-sha1", "cbc-sha384", "tls1.3-ccm"])
def test_relp_refuses_old_tls_and_other_suites(pki, relp, args):
    out = _s_client(relp, pki, *args)
    assert out.returncode != 0 and "CONNECTION ESTABLISHED" not in out.stdout, out.stdout
    # the server's alert, not this client giving up before sending anything
    assert re.search(r"alert (protocol version|handshake failure|insufficient security)", out.stdout), out.stdout


# --- c) the session bound ------------------------------------------------------------------------

def test_session_bound_restart_closes_the_session_and_loses_nothing(pki, relp, tmp_path):
    unit = render("minibus-certs-session-bound.service.j2")
    assert re.search(r"^ExecStart=/usr/bin/systemctl try-restart rsyslog\.service$", unit, re.MULTILINE), unit
    client = relp.client("bound", pki["client"])
    sender = Sender(client.inject, "c")
    sender.start()
    wait_for(lambda: len(seqs(relp.remote_log, "c")) > 200, "lines before the bound")
    before = sessions(relp.port)
    assert before, "no established session to the server"
    relp.server.restart()  # what the service's ExecStart does to rsyslog.service
    count = len(seqs(relp.remote_log, "c"))
    wait_for(lambda: len(seqs(relp.remote_log, "c")) > count + 200, "lines after the bound")
    after = sessions(relp.port)
    sender.halt.set()
    sender.join(10)
    assert after and not set(before) & set(after), "session not renewed: before %s, after %s" % (before, after)
    wait_for(lambda: len(seqs(client.accepted, "c")) >= sender.sent, "the client to accept every line")
    wait_for(_drained(client, relp.remote_log, "c"), "the client's queue to drain")
    lost = set(seqs(client.accepted, "c")) - set(seqs(relp.remote_log, "c"))
    assert not lost, "lost at the session bound: %s" % sorted(lost)[:20]
    client.stop()


def test_session_bound_timer_interval_is_the_variable(tmp_path):
    """The timer as Ansible renders it (the collection's duration filter needs the collection loader)."""
    for value, seconds in (("1h", 3600), ("90m", 5400)):
        dest = str(tmp_path / ("timer-%s" % value))
        out = subprocess.run(
            [os.path.join(BIN_DIR, "ansible"), "localhost", "-c", "local", "-i", "localhost,", "-m", "ansible.builtin.template",
             "-a", "src=%s dest=%s" % (os.path.join(ROLE, "templates", "minibus-certs-session-bound.timer.j2"), dest),
             "-e", "minibus_certs_rsyslog_max_session_age=%s" % value, "-e", "ansible_python_interpreter=%s" % sys.executable],
            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False,
            timeout=120)
        assert out.returncode == 0, out.stdout
        timer = read_text(dest)
        assert "OnUnitActiveSec=%ds\n" % seconds in timer and "OnActiveSec=%ds\n" % seconds in timer, timer


# --- the tcp transport stays an option --------------------------------------------------------------

def test_tcp_transport_carries_a_line(pki, tmp_path):
    lab = Lab(str(tmp_path), pki, "tcp")
    try:
        with open(lab.server.snippet) as handle:
            assert 'load="imtcp"' in handle.read()
        lab.start()
        client = lab.client("tcp", pki["client"])
        send_lines(client.inject, "tcp", 1)
        wait_for(lambda: seqs(lab.remote_log, "tcp") == [0], "the line over tcp/gtls")
    finally:
        lab.stop()


# --- what EKU buys: a log server impersonated with a client's certificate ---------------------------

# What the client says when the server's certificate lacks serverAuth (measured)
CLIENT_EKU_REFUSAL = {"relp": "err 26:unsuitable certificate purpose", "tcp": "key purpose OID does not match"}


@pytest.mark.parametrize("transport", ["relp", "tcp"])
def test_server_name_on_a_client_certificate(pki, vault, tmp_path, transport):
    """The clients' PKI role can issue the log server's name (both roles allow minibus.test's
    subdomains in the bootstrap's defaults), with clientAuth only. Clients check serverAuth and refuse
    it: gtls, and librelp with OpenSSL (librelp with GnuTLS delivered here: docs/design.md)."""
    rogue = dict(pki, server=issue(vault, str(tmp_path), "rogue", "minibus-server", SERVER_NAME))
    lab = Lab(str(tmp_path), rogue, transport)
    try:
        lab.start()
        client = lab.client("rogue", pki["client"])
        send_lines(client.inject, "rogue", 1)
        text = CLIENT_EKU_REFUSAL[transport]
        wait_for(lambda: text in client.internal_text() or seqs(lab.remote_log, "rogue"), "the client's refusal")
        assert seqs(lab.remote_log, "rogue") == [], "the client delivered to a server without serverAuth"
        assert text in client.internal_text()
    finally:
        lab.stop()


# --- bad input: one sentence, before anything is changed -------------------------------------------

@pytest.mark.parametrize("value, sentence", [
    ("abc", "minibus_certs_rsyslog_max_session_age 'abc' is not a duration: write it like 24h, 90m or 3600s."),
    ("30s", "minibus_certs_rsyslog_max_session_age must be a duration of at least 1m (rsyslog is restarted that often); got 30s."),
])
def test_session_bound_bad_value_stops_the_preflight(tmp_path, value, sentence):
    play = tmp_path / "preflight.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"ansible.builtin.include_role": {"name": "minibus.pki.minibus_certs", "tasks_from": "preflight"},
                   "vars": {"minibus_certs_vault_url": "https://vault.example.org:8200",
                            "minibus_certs_rsyslog_role": "server",
                            # gather_facts is off: the name has no fact to default to
                            "minibus_certs_common_name": SERVER_NAME,
                            "minibus_certs_rsyslog_permitted_peers": [CLIENT_NAME],
                            "minibus_certs_trust_anchor": "-----BEGIN CERTIFICATE-----\n..."}}]}]))
    out = subprocess.run(
        [os.path.join(BIN_DIR, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
         "-e", "minibus_certs_rsyslog_max_session_age=%s" % value, "-e", "ansible_python_interpreter=%s" % sys.executable],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False, timeout=120)
    assert out.returncode != 0, out.stdout
    assert sentence in out.stdout and "Traceback" not in out.stdout, out.stdout
