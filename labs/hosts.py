# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Host directories as the role lays them out, and the real core and renewer run against a lab Vault.

Importing this module makes ``ansible_collections.minibus.pki`` importable (labs/collection.py) and gives
child processes the same collections path (``clean_env``). Helpers: ``host_params``, ``bootstrap_host``,
``write_renewer_config``, ``run_renewer``, ``run_publish``, ``assert_host_consistent``, ``tree_digest``,
``store_record``, ``throwaway_account``, ``account_store``, and ``FactHost`` (the role's local fact as root
runs it against a throw-away account's store). Plain Python: the fixtures live in the conftest.py files.
"""

from __future__ import absolute_import, division, print_function

import contextlib
import datetime
import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid

import jinja2

# REPO_ROOT, BOOTSTRAP_MOUNT, ROOT_TOKEN and free_port: for the test files, which import host helpers from here
from labs.collection import REPO_ROOT, make_collection_importable  # noqa: F401  pylint: disable=unused-import
from labs.vault import APPROLE_NAME, BOOTSTRAP_MOUNT, ROLE_ID, ROOT_TOKEN, free_port  # noqa: F401  pylint: disable=unused-import

BIN_DIR = os.path.dirname(os.path.abspath(sys.executable))
RENEWAL_MOUNT = "approle"
COLLECTIONS_DIR = make_collection_importable("minibus-reliability-coll-")
MODULE_UTILS = os.path.join(COLLECTIONS_DIR, "ansible_collections", "minibus", "pki", "plugins", "module_utils")

from ansible_collections.minibus.pki.plugins.module_utils import _privdrop, certs, issuance, secret_store  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.minibus.pki.plugins.module_utils.files import CertStore  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.minibus.pki.plugins.module_utils.options import AUTH_SPEC, CONNECTION_SPEC  # noqa: E402  pylint: disable=wrong-import-position

from cryptography import x509  # noqa: E402  pylint: disable=wrong-import-position
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402  pylint: disable=wrong-import-position
from cryptography.x509.oid import NameOID  # noqa: E402  pylint: disable=wrong-import-position


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


def account_store(base, account):
    """base/store/ (root 0755) with tls/ and state/ (0700, the account's, as the role lays them out): (tls, state)."""
    store = os.path.join(base, "store")
    os.mkdir(store, 0o755)
    tls, state = os.path.join(store, "tls"), os.path.join(store, "state")
    for d in (tls, state):
        os.mkdir(d, 0o700)
        os.chown(d, account.pw_uid, account.pw_gid)
    return tls, state


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


# --- the local fact as root runs it --------------------------------------------------------------------------
# The role's fact template (roles/minibus_certs/templates/minibus_certs.fact.j2) rendered against a library
# laid out as the role installs it (minibus_pki/ = plugins/module_utils), a throw-away account's store, and
# root-only look-alike files holding FACT_ROOT_SECRET (tests/reliability/test_fact.py, test_bounded_reads.py).

FACT_TEMPLATE = os.path.join(REPO_ROOT, "roles", "minibus_certs", "templates", "minibus_certs.fact.j2")
FACT_ROOT_SECRET = "s.ROOT-ONLY-%s" % uuid.uuid4().hex


def _self_signed(common_name, hours_left=20):
    key = certs.generate_private_key("ec", 256)
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=24 - hours_left))
            .not_valid_after(now + datetime.timedelta(hours=hours_left))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
            .sign(key, hashes.SHA256()))
    return certs.certificate_pem(cert), certs.private_key_pem(key)


def _populate_fact_store(tls, cert_pem, key_pem, secret_path):
    """Run as the account: its own store, as the module and the renewer leave it."""
    CertStore(os.path.join(tls, "cert.pem"), os.path.join(tls, "key.pem")).install(
        {"cert": cert_pem, "key": key_pem}, "0a")
    secret_store.save(secret_path, "s.the-accounts-own-secret-id", "acc", 25 * 3600)
    return True


class FactHost(object):
    """base/ (root 0755): lib/, etc/renewer.json, facts.d/ (root's); store/{tls,state} (the account's)."""

    def __init__(self, account):
        self.account = account
        self.base = tempfile.mkdtemp(prefix="minibus-fact-")
        os.chmod(self.base, 0o755)
        self.lib = os.path.join(self.base, "lib")
        shutil.copytree(MODULE_UTILS, os.path.join(self.lib, "minibus_pki"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        self.tls, self.state = account_store(self.base, account)
        self.secret = os.path.join(self.state, "secret-id.json")
        self.root_only = os.path.join(self.base, "root-only")
        os.mkdir(self.root_only, 0o700)
        # Root-only files that would look like the host's own store if root read them.
        self.root_secret = os.path.join(self.root_only, "secret-id.json")
        with open(self.root_secret, "w") as handle:
            json.dump({"secret_id": FACT_ROOT_SECRET, "state": "ready", "accessor": FACT_ROOT_SECRET}, handle)
        cert, key = _self_signed("root-only.example.org")
        self.root_cert = os.path.join(self.root_only, "cert.pem")
        self.root_key = os.path.join(self.root_only, "key.pem")
        for path, text in ((self.root_cert, cert), (self.root_key, key)):
            with open(path, "w") as handle:
                handle.write(text)
        self.root_state = os.path.join(self.root_only, "renewer-state.json")
        with open(self.root_state, "w") as handle:
            json.dump({"last_result": "failed", "last_message": FACT_ROOT_SECRET, "renewals_total": 7}, handle)
        for path in (self.root_secret, self.root_cert, self.root_key, self.root_state):
            os.chmod(path, 0o600)
        conf_dir = os.path.join(self.base, "etc")
        os.mkdir(conf_dir, 0o755)
        self.config = os.path.join(conf_dir, "renewer.json")
        with open(self.config, "w") as handle:
            json.dump({"url": "https://vault.invalid:8200", "role_id": "minibus/csr", "approle_name": "minibus-csr",
                       "common_name": "host.example.org", "key_type": "ec", "key_bits": 256,
                       "cert_path": os.path.join(self.tls, "cert.pem"), "key_path": os.path.join(self.tls, "key.pem"),
                       "secret_id_store": self.secret}, handle)
        os.chmod(self.config, 0o640)
        cert, key = _self_signed("host.example.org")
        _privdrop.run_as(account.pw_uid, account.pw_gid, _populate_fact_store, self.tls, cert, key, self.secret)
        self.fact = os.path.join(self.base, "minibus_certs.fact")
        template = jinja2.Template(open(FACT_TEMPLATE).read())
        with open(self.fact, "w") as handle:
            handle.write(template.render(ansible_managed="test", __minibus_certs_lib_dir=self.lib,
                                         __minibus_certs_renewer_config=self.config,
                                         minibus_certs_user=account.pw_name, minibus_certs_group=account.pw_name))
        os.chmod(self.fact, 0o755)

    def run(self, fact=None):
        # Python of this test run (it has the libraries the fact needs), isolated and without bytecode
        # like the fact's own shebang (python3 -IB).
        proc = subprocess.run([sys.executable, "-I", "-B", fact or self.fact], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, check=False, cwd="/", timeout=60)
        out, err = proc.stdout.decode(), proc.stderr.decode()
        assert proc.returncode == 0 and err == "", (proc.returncode, err)
        assert out.count("\n") == 1, out
        return out, json.loads(out)

    def root_files(self):
        seen = {}
        for name in sorted(os.listdir(self.root_only)):
            path = os.path.join(self.root_only, name)
            st = os.lstat(path)
            with open(path, "rb") as handle:
                seen[name] = (st.st_uid, stat.S_IMODE(st.st_mode), handle.read())
        return seen

    def plant(self, name, target):
        """What the account can do in a directory it owns: replace a name by its own symlink."""
        if os.path.lexists(name):
            os.unlink(name)
        os.symlink(target, name)
        os.lchown(name, self.account.pw_uid, self.account.pw_gid)
