# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Reliability tests against a real OpenBao dev server, real files and real processes.

The session fixture ``vault`` starts a dev OpenBao over HTTPS with tools/devbao.py (imported,
with the file audit device in clear, ``log_raw``: the leak scan recovers every secret Vault handed
out from the raw audit log). Every client here trusts the launcher's CA (``vault.ca_cert``) the
way a user would: ``ca_cert`` in module/renewer options, ``minibus_vault_ca_cert`` for the
bootstrap, ``BAO_CACERT`` for the CLI. It then configures the server with
playbooks/vault_bootstrap.yml and creates a broker token (``bao token create
-policy=minibus-broker``), as tests/integration/run.sh does.

Helpers (module level, used by the test files): ``host_params``, ``bootstrap_host``,
``write_renewer_config``, ``run_renewer``, ``assert_host_consistent``, ``tree_digest``,
``store_record``.
"""

from __future__ import absolute_import, division, print_function

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
BIN_DIR = os.path.dirname(os.path.abspath(sys.executable))
APPROLE_NAME = "minibus-generate-sign-server-keys"
ROLE_ID = "minibus/csr"
RENEWAL_MOUNT = "approle"
BOOTSTRAP_MOUNT = "minibus-bootstrap"
ROOT_TOKEN = "root"

# --- make ansible_collections.minibus.pki importable (and give ansible a collections path) -------
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO_ROOT, "tools"))
import devbao  # noqa: E402  pylint: disable=wrong-import-position
import raftbao  # noqa: E402  pylint: disable=wrong-import-position
from collection_path import make_collection_importable  # noqa: E402  pylint: disable=wrong-import-position

COLLECTIONS_DIR = make_collection_importable("minibus-reliability-coll-")
MODULE_UTILS = os.path.join(COLLECTIONS_DIR, "ansible_collections", "minibus", "pki", "plugins", "module_utils")

from ansible_collections.minibus.pki.plugins.module_utils import issuance  # noqa: E402
from ansible_collections.minibus.pki.plugins.module_utils.options import AUTH_SPEC, CONNECTION_SPEC  # noqa: E402

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402


free_port = devbao.free_port


def clean_env(**extra):
    """The environment for child processes: no VAULT_*/BAO_* leaking in from the caller."""
    env = dict((k, v) for k, v in os.environ.items()
               if not k.startswith(("VAULT_", "BAO_", "MINIBUS_"))
               # no CA bundle from the caller's shell: trust comes from ca_cert/VAULT_CACERT only
               and k not in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"))
    env["PATH"] = BIN_DIR + os.pathsep + env.get("PATH", "")
    env["ANSIBLE_COLLECTIONS_PATH"] = COLLECTIONS_DIR
    env["MINIBUS_RELIABILITY_COLLECTIONS"] = COLLECTIONS_DIR
    env["ANSIBLE_NOCOLOR"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.update(extra)
    return env


class Vault(object):
    """A running dev OpenBao over HTTPS (tools/devbao.py) with minibus.pki's bootstrap applied."""

    def __init__(self, directory):
        # raw audit log: the leak scan recovers every secret Vault handed out from it
        self.server = devbao.DevBao(directory, audit_raw=True)
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
        except devbao.DevBaoError as exc:
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
        self.api("PUT", "sys/seal")
        assert requests.get(self.url + "/v1/sys/seal-status", timeout=5, verify=self.ca_cert).json()["sealed"] is True

    def unseal(self):
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
    out = subprocess.run(
        [os.path.join(BIN_DIR, "ansible-playbook"), "-i", "localhost,",
         os.path.join(REPO_ROOT, "playbooks", "vault_bootstrap.yml"),
         "-e", "minibus_vault_url=%s" % url, "-e", "minibus_vault_ca_cert=%s" % ca_cert,
         "-e", "minibus_vault_token=%s" % root_token,
         "-e", "minibus_vault_trust_anchor_dest=%s" % trust_anchor_dest],
        check=False, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
        timeout=300)
    assert out.returncode == 0, out.stdout[-3000:]
    out = subprocess.run([devbao.bao_path(), "token", "create", "-policy=minibus-broker", "-ttl=2h", "-field=token"],
                         check=False, env=clean_env(BAO_ADDR=url, BAO_CACERT=ca_cert, BAO_TOKEN=root_token),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert out.returncode == 0, out.stderr
    broker_token = out.stdout.strip()
    assert broker_token
    return broker_token


class RaftVault(Vault):
    """A 3-node OpenBao Raft cluster over HTTPS (tools/raftbao.py), bootstrapped through its active node.

    Behaves as ``Vault`` for the helpers (``url`` is the node the API helpers and host_params talk
    to: the active node unless ``use(node)`` picked another); ``cluster`` is the raftbao.RaftBao.
    """

    def __init__(self, directory):  # pylint: disable=super-init-not-called
        self.cluster = raftbao.RaftBao(directory)
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
        except devbao.DevBaoError as exc:
            raise AssertionError(str(exc))

    def stop(self):
        self.cluster.down()

    def bootstrap(self):
        leader = self.cluster.wait_leader()
        self.broker_token = bootstrap_server(leader.url, self.ca_cert, self.root_token,
                                             os.path.join(self.dir, "root-ca.pem"))


@contextlib.contextmanager
def bootstrapped_raft(prefix):
    """A 3-node Raft cluster of its own, bootstrapped as production is; every node gone afterwards."""
    directory = tempfile.mkdtemp(prefix=prefix)
    server = RaftVault(directory)
    try:
        server.start()
        server.bootstrap()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def bootstrapped_vault(prefix):
    """A dev OpenBao of its own over HTTPS, bootstrapped as production is; gone afterwards."""
    directory = tempfile.mkdtemp(prefix=prefix)
    server = Vault(directory)
    try:
        server.start()
        server.bootstrap()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def throwaway_account(prefix):
    """A real system account (and its group) standing in for minibus-certs; removed afterwards."""
    name = "%s-%s" % (prefix, uuid.uuid4().hex[:8])
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name],
                   check=True)
    try:
        yield pwd.getpwnam(name)
    finally:
        subprocess.run(["userdel", name], check=False)
        subprocess.run(["groupdel", name], check=False, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def vault():
    with bootstrapped_vault("minibus-reliability-bao-") as server:
        yield server


@pytest.fixture(scope="module")
def raft_vault():
    """tools/raftbao.py's 3-node cluster, bootstrapped; a test that kills or seals a node brings it back."""
    with bootstrapped_raft("minibus-reliability-raft-") as server:
        yield server


@pytest.fixture
def host_dir(tmp_path):
    d = tmp_path / "host"
    d.mkdir()
    return str(d)


# --- host helpers ------------------------------------------------------------------------------

def paths(directory):
    return dict(cert_path=os.path.join(directory, "tls", "cert.pem"),
                key_path=os.path.join(directory, "tls", "key.pem"),
                chain_path=os.path.join(directory, "tls", "chain.pem"),
                ca_path=os.path.join(directory, "tls", "ca.pem"),
                secret_id_store=os.path.join(directory, "secret-id.json"))


def host_params(vault, directory, **overrides):
    """Every option with its default (as renewer.load_config does), filled for one host dir."""
    params = {}
    for spec in (CONNECTION_SPEC, AUTH_SPEC, issuance.CERTIFICATE_SPEC):
        for name, option in spec.items():
            params[name] = option.get("default")
    params.update(url=vault.url, ca_cert=vault.ca_cert, role_id=ROLE_ID, approle_name=APPROLE_NAME, common_name="host1.minibus.test",
                  alt_names=["alias.minibus.test"], retries=1, timeout=10)
    params.update(paths(directory))
    params.update(overrides)
    return params


def bootstrap_host(vault, directory, **overrides):
    """What the role's first run does: ensure_certificate with a fresh wrapped secret id and a store."""
    params = host_params(vault, directory, secret_id_wrapping_token=vault.mint_wrapped(), **overrides)
    result = issuance.ensure_certificate(params)
    assert result["issued"] and result["secret_id_rotated"], result
    assert store_record(directory)["state"] == "ready"
    return result


def write_renewer_config(vault, directory, name="renewer.json", **overrides):
    config = dict(url=vault.url, ca_cert=vault.ca_cert, role_id=ROLE_ID, approle_name=APPROLE_NAME, common_name="host1.minibus.test",
                  alt_names=["alias.minibus.test"], retries=1, timeout=10)
    config.update(paths(directory))
    config.update(overrides)
    path = os.path.join(directory, name)
    with open(path, "w") as handle:
        json.dump(config, handle)
    return path


RENEWER_SNIPPET = ("import sys; sys.path.insert(0, %r); "
                   "from ansible_collections.minibus.pki.plugins.module_utils.renewer import main; "
                   "sys.exit(main(sys.argv[1:]))" % COLLECTIONS_DIR)


def run_renewer(config, force=True, timeout=120):
    argv = [sys.executable, "-c", RENEWER_SNIPPET, "--config", config] + (["--force"] if force else [])
    return subprocess.run(argv, check=False, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)


def run_publish(config, timeout=60, **env):
    """minibus-certs-renew --publish (as the caller: root in these tests)."""
    argv = [sys.executable, "-c", RENEWER_SNIPPET, "--config", config, "--publish"]
    return subprocess.run(argv, check=False, env=clean_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)


def store_record(directory):
    path = paths(directory)["secret_id_store"]
    if not os.path.exists(path):
        return None
    with open(path) as handle:
        return json.load(handle)


# The renewer's health record (plugins/module_utils/health.py) is meant to change on a failed run:
# that is how --check and the metrics report the failure. Certificates, keys and the secret id
# store are what must not change.
HEALTH_FILES = ("renewer-state.json", "minibus_certs.prom")


def tree_digest(directory):
    """Names, symlink targets, modes and content of everything under directory (but the health record)."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(dirs + [f for f in files if f not in HEALTH_FILES]):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, directory)
            st = os.lstat(path)
            digest.update(("%s %o\n" % (rel, st.st_mode)).encode())
            if os.path.islink(path):
                digest.update(("-> %s\n" % os.readlink(path)).encode())
            elif os.path.isfile(path):
                with open(path, "rb") as handle:
                    digest.update(handle.read())
    return digest.hexdigest()


def one_line_output(proc):
    text = (proc.stdout + proc.stderr).strip()
    assert text and "\n" not in text, "expected exactly one line, got %r" % text
    assert "Traceback" not in text
    return text


def _pem_certs(data):
    return x509.load_pem_x509_certificates(data)


def assert_host_consistent(directory, common_name="host1.minibus.test"):
    """The public paths hold a matching key/cert, the cert chains up through chain.pem, unexpired."""
    p = paths(directory)
    with open(p["cert_path"], "rb") as handle:
        cert_pem = handle.read()
    with open(p["key_path"], "rb") as handle:
        key_pem = handle.read()
    with open(p["chain_path"], "rb") as handle:
        chain_pem = handle.read()
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki), \
        "%s: certificate and key do not match" % directory
    chain = _pem_certs(chain_pem)
    assert chain, "empty chain.pem"
    cert.verify_directly_issued_by(chain[0])
    for child, parent in zip(chain, chain[1:]):
        child.verify_directly_issued_by(parent)
    now = time.time()
    assert cert.not_valid_before_utc.timestamp() <= now + 60
    assert cert.not_valid_after_utc.timestamp() > now, "certificate expired"
    cn = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value
    assert cn == common_name
    # and openssl agrees (partial chain: chain.pem may stop at the intermediate)
    out = subprocess.run(["openssl", "verify", "-partial_chain", "-CAfile", p["chain_path"], p["cert_path"]], check=False,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
    assert out.returncode == 0, out.stdout
    return cert


def leftovers(directory):
    """Temp/staging debris of killed runs anywhere under directory."""
    found = []
    for root, dirs, files in os.walk(directory):
        for name in dirs + files:
            if name.startswith((".staging-", ".link-", ".tmp-")):
                found.append(os.path.relpath(os.path.join(root, name), directory))
    return sorted(found)
