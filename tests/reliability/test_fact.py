# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The local fact run as root never reads what the renewal account points it at.

As root, with a throw-away system account standing in for minibus-certs: the role's fact template
(roles/minibus_certs/templates/minibus_certs.fact.j2) is rendered against a library laid out as the role
installs it (minibus_pki/ = plugins/module_utils), the account's store holds a certificate, a key and a
secret id, and the account then replaces names in its store by symlinks to root-only files holding a
valid-looking secret id store and certificate. The fact, run as root like Ansible's fact gathering runs
it, must print one JSON object, never their content, never report them as the host's, and change nothing.
"""

from __future__ import absolute_import, division, print_function

import datetime
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import uuid

import jinja2
import pytest

from labs.hosts import MODULE_UTILS, REPO_ROOT, throwaway_account
from ansible_collections.minibus.pki.plugins.module_utils import _privdrop, certs, secret_store
from ansible_collections.minibus.pki.plugins.module_utils.files import CertStore

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd"),
                                reason="needs root and useradd")

TEMPLATE = os.path.join(REPO_ROOT, "roles", "minibus_certs", "templates", "minibus_certs.fact.j2")
ROOT_SECRET = "s.ROOT-ONLY-%s" % uuid.uuid4().hex


@pytest.fixture(scope="module")
def account():
    with throwaway_account("mbf1") as entry:
        yield entry


def _self_signed(common_name, hours_left=20):
    key = certs.generate_private_key("ec", 256)
    now = datetime.datetime.now(datetime.timezone.utc)
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=24 - hours_left))
            .not_valid_after(now + datetime.timedelta(hours=hours_left))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
            .sign(key, hashes.SHA256()))
    return certs.certificate_pem(cert), certs.private_key_pem(key)


def _populate(tls, cert_pem, key_pem, secret_path):
    """Run as the account: its own store, as the module and the renewer leave it."""
    CertStore(os.path.join(tls, "cert.pem"), os.path.join(tls, "key.pem")).install(
        {"cert": cert_pem, "key": key_pem}, "0a")
    secret_store.save(secret_path, "s.the-accounts-own-secret-id", "acc", 25 * 3600)
    return True


class Host(object):
    """base/ (root 0755): lib/, etc/renewer.json, facts.d/ (root's); store/{tls,state} (the account's)."""

    def __init__(self, account):
        self.account = account
        self.base = tempfile.mkdtemp(prefix="minibus-fact-")
        os.chmod(self.base, 0o755)
        self.lib = os.path.join(self.base, "lib")
        shutil.copytree(MODULE_UTILS, os.path.join(self.lib, "minibus_pki"),
                        ignore=shutil.ignore_patterns("__pycache__"))
        store = os.path.join(self.base, "store")
        os.mkdir(store, 0o755)
        self.tls, self.state = os.path.join(store, "tls"), os.path.join(store, "state")
        for d in (self.tls, self.state):
            os.mkdir(d, 0o700)
            os.chown(d, account.pw_uid, account.pw_gid)
        self.secret = os.path.join(self.state, "secret-id.json")
        self.root_only = os.path.join(self.base, "root-only")
        os.mkdir(self.root_only, 0o700)
        # Root-only files that would look like the host's own store if root read them.
        self.root_secret = os.path.join(self.root_only, "secret-id.json")
        with open(self.root_secret, "w") as handle:
            json.dump({"secret_id": ROOT_SECRET, "state": "ready", "accessor": ROOT_SECRET}, handle)
        cert, key = _self_signed("root-only.example.org")
        self.root_cert = os.path.join(self.root_only, "cert.pem")
        self.root_key = os.path.join(self.root_only, "key.pem")
        for path, text in ((self.root_cert, cert), (self.root_key, key)):
            with open(path, "w") as handle:
                handle.write(text)
        self.root_state = os.path.join(self.root_only, "renewer-state.json")
        with open(self.root_state, "w") as handle:
            json.dump({"last_result": "failed", "last_message": ROOT_SECRET, "renewals_total": 7}, handle)
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
        _privdrop.run_as(account.pw_uid, account.pw_gid, _populate, self.tls, cert, key, self.secret)
        self.fact = os.path.join(self.base, "minibus_certs.fact")
        template = jinja2.Template(open(TEMPLATE).read())
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


@pytest.fixture
def host(account):
    h = Host(account)
    yield h
    shutil.rmtree(h.base, ignore_errors=True)


def _assert_not_leaked(out, host):
    assert ROOT_SECRET not in out and "root-only.example.org" not in out and "PRIVATE KEY" not in out
    assert "s.the-accounts-own-secret-id" not in out and "Traceback" not in out


def test_the_fact_shows_the_accounts_store(host):
    """The control: untouched, the fact reads the account's store and sees a good certificate and secret id."""
    out, fact = host.run()
    assert fact["error"] is None, fact
    assert fact["certificate"]["subject"] == "CN=host.example.org" and fact["certificate"]["key_matches"] is True
    assert fact["secret_id"]["usable"] and fact["needs_certificate"] is False and fact["needs_secret_id"] is False
    _assert_not_leaked(out, host)


@pytest.mark.parametrize("planted, target", [
    ("state/secret-id.json", "root_secret"),
    ("state/renewer-state.json", "root_state"),
    ("tls/cert.pem", "root_cert"),
    ("tls/key.pem", "root_key"),
])
def test_planted_symlinks_to_root_only_files_are_never_read(host, planted, target):
    before = host.root_files()
    host.plant(os.path.join(host.base, "store", planted), getattr(host, target))
    out, fact = host.run()
    _assert_not_leaked(out, host)
    assert host.root_files() == before
    if fact["error"] is None:
        # Root's look-alike files never count as the host's: read as the account, they cannot be opened.
        assert fact["certificate"]["subject"] != "CN=root-only.example.org"
        assert fact["status"]["renewals_total"] != 7
        if planted == "state/secret-id.json":
            assert not fact["secret_id"]["usable"] and fact["needs_secret_id"]
        if planted.startswith("tls/"):
            assert fact["needs_certificate"]
    else:
        assert "\n" not in fact["error"]


def test_a_planted_state_directory_link_is_not_followed(host):
    """The account cannot replace its directory (its parent is root's); root's run without --owner refuses it."""
    before = host.root_files()
    shutil.rmtree(host.state)
    host.plant(host.state, host.root_only)  # as if the parent let it
    out, fact = host.run()
    _assert_not_leaked(out, host)
    assert host.root_files() == before
    assert fact["error"] or not fact["secret_id"]["usable"]


def test_root_without_an_owner_refuses_the_accounts_store(host):
    with open(host.fact) as handle:
        text = handle.read()
    text = text.replace('"--owner", "%s", "--group", "%s"' % ((host.account.pw_name,) * 2), "")
    bare = os.path.join(host.base, "bare.fact")
    with open(bare, "w") as handle:
        handle.write(text)
    host.plant(host.secret, host.root_secret)
    out, fact = host.run(bare)
    _assert_not_leaked(out, host)
    assert fact["error"] and "belongs to uid %d" % host.account.pw_uid in fact["error"], fact


def test_a_missing_core_is_one_json_error(host):
    shutil.rmtree(os.path.join(host.lib, "minibus_pki"))
    out, fact = host.run()
    assert fact["error"] and "cannot be loaded" in fact["error"] and fact["schema_version"] is None
