# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""P6: a fleet soak on one machine, months of unattended operation compressed into minutes or hours.

What runs (all real processes on this machine, as root; docs/measurements.md "P6"):

* Vault: tools/raftbao.py's 3-node OpenBao Raft cluster over HTTPS on loopback (free ports),
  bootstrapped by playbooks/vault_bootstrap.yml with the secret id lifetime scaled like the
  certificates (315 s: a little longer than one certificate, as 25 h is to 24 h).
* HOSTS hosts (20 by default), each its own system account (useradd --system) and its own store
  (a root-owned directory with the account's tls/ and state/ inside, as the role lays it out). Each
  host's renewer is the real ``minibus-certs-renew`` (plugins/module_utils/renewer.py) exec'd as that
  account with the renewer.json the role would write, ``url`` listing every node. 5-minute
  certificates; renew_before 150 s; instead of systemd timers the lab's scheduler runs each
  host's renewer at every PERIOD tick plus a fresh random delay in [0, JITTER) (systemd's
  OnCalendar + RandomizedDelaySec), never twice at once (a oneshot unit does not overlap itself).
  After a renewal of an rsyslog host, root's ``--publish`` (the unit's ExecStopPost).
* rsyslog: one log server and five clients among the hosts, real rsyslogd each, configured from the
  role's RELP template (labs/rsyslog.py); on each client sequence-numbered lines are logged through
  syslog(3) into its rsyslog's socket (senders.SyslogSender: the client's own /dev/log in a mount
  namespace); the server's remote log is counted for lines lost from syslog(3) on, lost between the
  rsyslogs and duplicated.
* The broker's scheduled recovery run: every RECOVER_EVERY s the lab looks at each host's metrics
  (what the role's local fact reports) and, for a host without a usable secret id, does what the
  role's certificate step does on a recovery run: a wrapped secret id minted with the broker token
  on the bootstrap mount, handed to issuance.ensure_certificate (the core function behind
  vault_pki_issue), as root for the host's account. playbooks/recover.yml is the real schedule.
* Faults, repeating (FAULTS): kill -9 of the active node and its return; a sealed node and its
  unseal; every node SIGSTOPped for a quarter of the certificate's life; kill -9 of a renewer in the
  middle of a renewal (after it marked its secret id in use); one host's state directory (a tmpfs)
  filled; one host's clock 2 minutes ahead (libfaketime, Debian package faketime); a restart of the
  log server's rsyslogd; one host offline (its renewer not run) for longer than its secret id lives.

Measured: certificates that expired while their host was running, hosts that needed a person at the end
(``--check`` critical after the recovery runs), lines lost between the rsyslogs, per fault the time
until it was seen (by the hosts' metrics, a failed renewer run or ``--check``, else the lab's monitor of
Vault / rsyslog) and until it cleared, Vault requests and renewer CPU per renewal.

Root only (accounts, tmpfs). run(seconds=...) returns the result dict; markdown()/table() format it.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import pwd
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TTL = 300                 # certificate lifetime, s
RENEW_BEFORE = 150        # renew when this much is left
PERIOD = 20               # the timer's tick (OnCalendar), s
JITTER = 10               # RandomizedDelaySec, s
SECRET_ID_TTL = 315       # the AppRole's secret_id_ttl, s (longer than one certificate)
RECOVER_EVERY = 20        # the broker's scheduled recovery run, s
HOSTS = 20
CLIENTS = 5
RATE = 20                 # lines/s per rsyslog client
SKEW = "+120s"            # the skewed host's clock (libfaketime)
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
_REQUESTS = re.compile(r"; (\d+) Vault requests")


class _Namespace(object):
    def __init__(self, **items):
        self.__dict__.update(items)


def _lab():
    """The labs package's pieces this lab uses: (core side, rsyslog side)."""
    from labs import hosts, rsyslog, senders, vault  # pylint: disable=import-outside-toplevel
    core = _Namespace(clean_env=hosts.clean_env, BIN_DIR=hosts.BIN_DIR, host_params=hosts.host_params,
                      issuance=hosts.issuance, raftbao=vault, devbao=vault, free_port=vault.free_port)
    rl = _Namespace(RSYSLOGD=rsyslog.RSYSLOGD, render_rsyslog_confs=rsyslog.render_rsyslog_confs,
                    role_vars=rsyslog.role_vars, main_conf=rsyslog.main_conf, stop_process=rsyslog.stop_process,
                    wait_port=rsyslog.wait_port, seqs=senders.seqs, wait_for=senders.wait_for,
                    SyslogSender=senders.SyslogSender)
    return core, rl


def _now():
    return time.time()


# --------------------------------------------------------------------------------------------------
# hosts
# --------------------------------------------------------------------------------------------------

class Host(object):
    """One host: account, root-owned base with the account's tls/ and state/, renewer.json, maybe rsyslogd."""

    def __init__(self, lab, index, name, role):
        self.lab, self.index, self.name, self.role = lab, index, name, role
        self.account = None
        self.base = os.path.join(lab.work, name)
        self.var = os.path.join(self.base, "var")
        self.tls_dir = os.path.join(self.var, "tls")
        self.state_dir = os.path.join(self.var, "state")
        self.published_dir = os.path.join(self.var, "published")
        self.etc = os.path.join(self.base, "etc")
        self.config = os.path.join(self.etc, "renewer.json")
        self.trust_anchor = os.path.join(self.etc, "trust-anchor.pem")
        self.ca_cert = os.path.join(self.etc, "vault-ca.pem")
        # root's textfile, rendered by --publish from the checked set (the account writes none of its own)
        self.metrics_dir = os.path.join(self.var, "metrics")
        self.metrics = os.path.join(self.metrics_dir, "minibus_certs.prom")
        self.store = os.path.join(self.state_dir, "secret-id.json")
        # rsyslog (rsyslog_lab's names)
        self.work = os.path.join(self.base, "rsyslog-work")
        self.remote_log = os.path.join(self.base, "remote.log")
        self.accepted_log = os.path.join(self.base, "accepted.log")
        self.syslog_socket = os.path.join(self.base, "log.sock")  # the client's /dev/log (SyslogSender)
        self.internal_log = os.path.join(self.base, "rsyslog-internal.log")
        self.stderr_log = os.path.join(self.base, "rsyslogd.stderr")
        self.conf = os.path.join(self.base, "rsyslog.conf")
        self.snippet = os.path.join(self.base, "10-minibus-tls.conf")
        self.proc = None
        # scheduling and faults
        self.offline = False
        self.held = False        # the fault driver runs this host itself
        self.skewed = False
        self.running = False
        self.next_run = 0.0
        self.recovered_at = 0.0
        self.last_run = None     # (ended, exit code, output)

    def create(self, tmpfs=False):
        name = "mbsk-%s-%02d" % (self.lab.tag, self.index)
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", name],
                       check=True)
        self.account = pwd.getpwnam(name)
        for d in (self.base, self.var, self.etc, self.work, self.metrics_dir):
            os.makedirs(d)
            os.chmod(d, 0o755)
        for d, mode in ((self.tls_dir, 0o750), (self.state_dir, 0o700)):
            os.mkdir(d, mode)
            os.chown(d, self.account.pw_uid, self.account.pw_gid)
        if tmpfs:  # a small file system of its own: the fault fills it
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0700,uid=%d,gid=%d"
                            % (self.account.pw_uid, self.account.pw_gid), "minibus-soak", self.state_dir], check=True)
            self.tmpfs = True
        shutil.copyfile(self.lab.root_ca, self.trust_anchor)
        shutil.copyfile(self.lab.cluster.ca_cert, self.ca_cert)
        for path in (self.trust_anchor, self.ca_cert):
            os.chmod(path, 0o644)

    def identity(self):
        if self.role == "server":
            return dict(approle_name="minibus-log-server", role_id="minibus/csr-log-server", role_name="minibus-log-server")
        return dict(approle_name="minibus-generate-sign-server-keys", role_id="minibus/csr", role_name="minibus-server")

    def options(self):
        """renewer.json as roles/minibus_certs/templates/renewer.json.j2 writes it (url: every node)."""
        usage = "serverAuth" if self.role == "server" else "clientAuth"
        options = dict(url=self.lab.cluster.urls, ca_cert=self.ca_cert, common_name=self.name, alt_names=[],
                       ttl="%ds" % TTL, renew_before="%ds" % RENEW_BEFORE, method="sign", key_type="ec", key_bits=256,
                       engine_mount_point="pki_int", timeout=5, retries=1,
                       cert_path=os.path.join(self.tls_dir, "cert.pem"), key_path=os.path.join(self.tls_dir, "key.pem"),
                       chain_path=os.path.join(self.tls_dir, "chain.pem"),
                       fullchain_path=os.path.join(self.tls_dir, "fullchain.pem"), trust_anchor_path=self.trust_anchor,
                       extended_key_usage=[usage], secret_id_store=self.store,
                       timer_on_calendar="*:*:0/%d" % PERIOD, timer_randomized_delay="%ds" % JITTER,
                       publish={"dir": self.published_dir, "key_usage": usage, "metrics_path": self.metrics,
                                "owner": self.account.pw_name, "group": self.account.pw_name})
        options.update(self.identity())
        return options

    def write_config(self):
        with open(self.config, "w") as handle:
            json.dump(self.options(), handle)
        os.chmod(self.config, 0o644)

    def recover(self, ttl=None):
        """What the role's certificate step does with a fresh wrapped secret id (bootstrap and recovery run):
        issuance.ensure_certificate as root for the account, in a process of its own as the broker's module
        run is (the core forks to drop privileges; a fork of this many-threaded lab could deadlock)."""
        conftest = self.lab.conftest
        params = conftest.host_params(self.lab.vault_like, self.var, **dict(
            self.options(), ttl=ttl or "%ds" % TTL, owner=self.account.pw_name, group=self.account.pw_name,
            secret_id_wrapping_token=self.lab.mint_wrapped(self.identity()["approle_name"])))
        for key in ("publish", "timer_on_calendar", "timer_randomized_delay"):
            params.pop(key, None)
        params["ca_path"] = None
        out = subprocess.run([sys.executable, "-c", self.lab.issue_snippet], input=json.dumps(params),
                             env=self.lab.conftest.clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True, timeout=300, check=False)
        self.recovered_at = _now()
        if out.returncode != 0:
            raise RuntimeError((out.stdout.strip().splitlines() or ["no output"])[-1][:300])
        result = json.loads(out.stdout.strip().splitlines()[-1])
        self.publish()  # the role's publish step follows its certificate step
        return result

    # --- the renewer ---
    def renewer_argv(self, *extra):
        return [sys.executable, "-c", self.lab.snippet, "--config", self.config] + list(extra)

    def renewer_env(self):
        env = self.lab.conftest.clean_env(HOME="/", MINIBUS_RELIABILITY_COLLECTIONS=self.lab.collections,
                                          ANSIBLE_COLLECTIONS_PATH=self.lab.collections)
        if self.skewed:
            env.update(LD_PRELOAD=FAKETIME_LIB, FAKETIME=SKEW, FAKETIME_DONT_FAKE_MONOTONIC="1")
        return env

    def spawn(self, *extra):
        out = tempfile.TemporaryFile(mode="w+")
        proc = subprocess.Popen(self.renewer_argv(*extra), stdout=out, stderr=subprocess.STDOUT, cwd="/",
                                env=self.renewer_env(), user=self.account.pw_uid, group=self.account.pw_gid,
                                extra_groups=[])
        return proc, out

    @staticmethod
    def ended(proc):
        """Whether the run has ended, reaping it with wait4 (never Popen.poll, which would lose its CPU usage)."""
        if proc.returncode is None:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid == 0:
                return False
            proc.returncode = os.waitstatus_to_exitcode(status)
            proc.minibus_cpu = usage.ru_utime + usage.ru_stime
        return True

    @staticmethod
    def finish(proc, out):
        """Wait for the run: (exit code, output, CPU seconds of the run)."""
        if proc.returncode is None:
            _pid, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            proc.minibus_cpu = usage.ru_utime + usage.ru_stime
        out.seek(0)
        text = out.read()
        out.close()
        return proc.returncode, text, getattr(proc, "minibus_cpu", 0.0)

    def check(self):
        proc, out = self.spawn("--check")
        code, text, _cpu = self.finish(proc, out)
        return code, text.strip()

    def publish(self):
        out = subprocess.run(self.renewer_argv("--publish"), env=self.lab.conftest.clean_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, universal_newlines=True, timeout=60, check=False)
        return out.returncode, out.stdout

    # --- what the lab observes ---
    def read_metrics(self):
        values = {}
        try:
            with open(self.metrics) as handle:
                for line in handle:
                    if line.startswith("minibus_certs_") and not line.startswith("#"):
                        name, value = line.rsplit(" ", 1)
                        key = name.split("{", 1)[0][len("minibus_certs_"):]
                        if key == "state":
                            if value.strip() == "1":
                                values["state"] = re.search(r'state="([a-z_]+)"', name).group(1)
                        else:
                            values[key] = int(value)
        except (OSError, ValueError, AttributeError):
            return {}
        return values

    def not_after(self):
        from cryptography import x509  # pylint: disable=import-outside-toplevel
        try:
            with open(os.path.join(self.tls_dir, "cert.pem"), "rb") as handle:
                cert = x509.load_pem_x509_certificate(handle.read())
        except (OSError, ValueError):
            return None, None
        return cert.not_valid_after_utc.timestamp(), cert.serial_number

    def store_state(self):
        try:
            with open(self.store) as handle:
                return json.load(handle).get("state")
        except (OSError, ValueError):
            return None

    # --- rsyslogd ---
    def start_rsyslog(self):
        rl = self.lab.rl
        with open(self.stderr_log, "a") as err:
            self.proc = subprocess.Popen([rl.RSYSLOGD, "-n", "-f", self.conf, "-i", os.path.join(self.base, "rsyslogd.pid")],
                                         stdout=subprocess.DEVNULL, stderr=err)

    def stop_rsyslog(self):
        self.lab.rl.stop_process(self.proc)
        self.proc = None


# --------------------------------------------------------------------------------------------------
# the lab
# --------------------------------------------------------------------------------------------------

class _VaultLike(object):
    """What conftest.host_params reads from a vault object."""

    def __init__(self, lab):
        self.lab = lab

    @property
    def url(self):
        return self.lab.cluster.urls

    @property
    def ca_cert(self):
        return self.lab.cluster.ca_cert


class Soak(object):
    def __init__(self, log=print, hosts=HOSTS, clients=CLIENTS, rate=RATE, seed=None):
        self.conftest, self.rl = _lab()
        self.log = log
        self.random = random.Random(seed)
        self.tag = uuid.uuid4().hex[:6]
        self.work = tempfile.mkdtemp(prefix="minibus-soak-")
        os.chmod(self.work, 0o755)
        self.cluster = self.conftest.raftbao.RaftBao(os.path.join(self.work, "raft"))
        self.vault_like = _VaultLike(self)
        self.root_ca = os.path.join(self.work, "root-ca.pem")
        self.rate = rate
        self.n_hosts, self.n_clients = hosts, clients
        self.hosts = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.runs = []            # dicts: host, start, end, code, cpu, renewed, requests
        self.recoveries = []      # dicts: host, at, ok, message
        self.expired = {}         # (host, serial) -> first seen
        self.expired_offline = set()
        self.person = []
        self.senders = {}
        self.broker_token = None
        self.collections = None
        self.snippet = None
        self.issue_snippet = None
        self.port = None

    # --- setup ---
    def _collections(self):
        """An ansible_collections tree the accounts can read (the renewer is exec'd as each of them)."""
        top = os.path.join(self.work, "collections")
        os.makedirs(os.path.join(top, "ansible_collections", "minibus"))
        for d in (top, os.path.join(top, "ansible_collections"), os.path.join(top, "ansible_collections", "minibus")):
            os.chmod(d, 0o755)
        os.symlink(REPO_ROOT, os.path.join(top, "ansible_collections", "minibus", "pki"))
        self.collections = top
        self.snippet = ("import sys; sys.path.insert(0, %r); "
                        "from ansible_collections.minibus.pki.plugins.module_utils.renewer import main; "
                        "sys.exit(main(sys.argv[1:]))" % top)
        # the broker's module run: params (with the wrapping token) on stdin, never on the command line
        self.issue_snippet = ("import json, sys; sys.path.insert(0, %r); "
                              "from ansible_collections.minibus.pki.plugins.module_utils import issuance\n"
                              "from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError\n"
                              "try:\n"
                              "    r = issuance.ensure_certificate(json.load(sys.stdin))\n"
                              "except MinibusError as exc:\n"
                              "    print(exc.message); sys.exit(1)\n"
                              "print(json.dumps(dict(reason=r['reason'], issued=r['issued'])))" % top)

    def start_vault(self):
        c = self.conftest
        self.cluster.up()
        leader = self.cluster.wait_leader()
        out = subprocess.run(
            [os.path.join(c.BIN_DIR, "ansible-playbook"), "-i", "localhost,",
             os.path.join(REPO_ROOT, "playbooks", "vault_bootstrap.yml"),
             "-e", "minibus_vault_url=%s" % leader.url, "-e", "minibus_vault_ca_cert=%s" % self.cluster.ca_cert,
             "-e", "minibus_vault_token=%s" % self.cluster.root_token, "-e", "minibus_vault_trust_anchor_dest=%s" % self.root_ca,
             "-e", "minibus_vault_secret_id_ttl=%ds" % SECRET_ID_TTL, "-e", "minibus_vault_pki_role_max_ttl=%ds" % SECRET_ID_TTL,
             "-e", "minibus_vault_pki_role_ttl=%ds" % TTL],
            check=False, env=c.clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True,
            timeout=600)
        if out.returncode != 0:
            raise RuntimeError("vault_bootstrap.yml failed: %s" % out.stdout[-3000:])
        out = subprocess.run([c.devbao.bao_path(), "token", "create", "-policy=minibus-broker", "-ttl=12h", "-field=token"],
                             check=False, env=c.clean_env(BAO_ADDR=leader.url, BAO_CACERT=self.cluster.ca_cert,
                                                          BAO_TOKEN=self.cluster.root_token),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        if out.returncode != 0:
            raise RuntimeError("broker token: %s" % out.stderr)
        self.broker_token = out.stdout.strip()
        os.chmod(self.root_ca, 0o644)

    def mint_wrapped(self, approle_name):
        """The broker's wrapped secret id on the bootstrap mount (what the role's lookup does), any live node."""
        import requests  # pylint: disable=import-outside-toplevel
        last = None
        for url in self.cluster.urls:
            try:
                response = requests.post("%s/v1/auth/minibus-bootstrap/role/%s/secret-id" % (url, approle_name),
                                         headers={"X-Vault-Token": self.broker_token, "X-Vault-Wrap-TTL": "60s"},
                                         json={}, timeout=10, verify=self.cluster.ca_cert)
                if response.status_code == 200:
                    return response.json()["wrap_info"]["token"]
                last = "HTTP %d" % response.status_code
            except requests.exceptions.RequestException as exc:
                last = type(exc).__name__
        raise RuntimeError("the broker could not mint a wrapped secret id (%s)" % last)

    def build(self):
        self._collections()
        self.start_vault()
        names = [("logs.minibus.test", "server")]
        names += [("client%d.minibus.test" % (i + 1), "client") for i in range(self.n_clients)]
        names += [("host%02d.minibus.test" % (i + 1), "plain") for i in range(self.n_hosts - len(names))]
        self.hosts = [Host(self, i + 1, n, r) for i, (n, r) in enumerate(names)]
        plain = [h for h in self.hosts if h.role == "plain"]
        # the hosts with a fault of their own (plain hosts: no rsyslog; different ones)
        self.h_offline, self.h_skew, self.h_full = plain[0], plain[1], plain[2]
        for host in self.hosts:
            host.create(tmpfs=host is self.h_full)
            host.write_config()
            # the first run of the role; first lifetimes spread, as in a fleet that has run for a while
            host.recover(ttl="%ds" % self.random.randint(RENEW_BEFORE + 20, TTL))
        self.log("P6: %d hosts bootstrapped (each its own account), Vault %s" % (len(self.hosts), " ".join(self.cluster.urls)))
        self._start_rsyslog()
        start = _now()
        for host in self.hosts:
            host.next_run = start + self.random.uniform(0, PERIOD + JITTER)

    def _start_rsyslog(self):
        rl, c = self.rl, self.conftest
        self.server = self.hosts[0]
        self.clients = [h for h in self.hosts if h.role == "client"]
        self.port = c.free_port()
        permitted = [h.name for h in self.clients]
        rl.render_rsyslog_confs([(h, rl.role_vars(h, self.port, permitted=permitted)) for h in [self.server] + self.clients])
        for host in [self.server] + self.clients:
            with open(host.conf, "w") as handle:
                handle.write(rl.main_conf(host, host.snippet, syslog_socket=host.syslog_socket))
        self.server.start_rsyslog()
        rl.wait_port(self.port)
        for client in self.clients:
            client.start_rsyslog()
            rl.wait_for(lambda: os.path.exists(client.syslog_socket), "%s's rsyslog socket" % client.name, 30)
        self.tags = dict((c.name, "c%d" % (i + 1)) for i, c in enumerate(self.clients))
        for client in self.clients:
            sender = rl.SyslogSender(client.syslog_socket, self.tags[client.name], self.rate)
            sender.start()
            self.senders[client.name] = sender

    # --- the scheduler (the hosts' timers) ---
    def _run_host(self, host, *extra):
        start = _now()
        proc, out = host.spawn(*extra)
        code, text, cpu = host.finish(proc, out)
        renewed = "renewed: serial" in text
        match = _REQUESTS.search(text)
        row = dict(host=host.name, start=start, end=_now(), code=code, cpu=cpu, renewed=renewed,
                   requests=int(match.group(1)) if match else 0, text=text.strip()[-300:], skewed=host.skewed)
        host.publish()  # the unit's ExecStopPost: root's checked copies and the metrics, after every run
        with self.lock:
            self.runs.append(row)
        host.last_run = (row["end"], code, text)
        return row

    def _timer(self, host):
        try:
            self._run_host(host)
        finally:
            with self.lock:
                host.running = False
                tick = (int(_now() // PERIOD) + 1) * PERIOD
                host.next_run = tick + self.random.uniform(0, JITTER)

    def scheduler(self):
        while not self.stopping.is_set():
            now = _now()
            for host in self.hosts:
                with self.lock:
                    due = not host.running and not host.offline and not host.held and now >= host.next_run
                    if due:
                        host.running = True
                if due:
                    threading.Thread(target=self._timer, args=(host,), daemon=True).start()
            self.stopping.wait(0.5)

    # --- the broker's scheduled recovery run ---
    def broker(self):
        while not self.stopping.wait(RECOVER_EVERY):
            self.recover_round()

    def recover_round(self):
        for host in self.hosts:
            if host.offline:
                continue
            m = host.read_metrics()
            if not m or m.get("last_attempt_timestamp_seconds", 0) < host.recovered_at - 1:
                continue  # no run since the last recovery: the fact is older than the fix
            if m.get("secret_id_usable", 1) == 0 or m.get("state") in ("expired", "no_certificate", "no_secret_id"):
                try:
                    result = host.recover()
                    self.recoveries.append(dict(host=host.name, at=_now(), ok=True, message=result.get("reason")))
                except Exception as exc:  # pylint: disable=broad-except
                    self.recoveries.append(dict(host=host.name, at=_now(), ok=False, message=str(exc)[:300]))
                    self.log("P6: broker recovery of %s failed: %s" % (host.name, exc))

    # --- the monitor: expired certificates ---
    def monitor(self):
        while not self.stopping.wait(1.0):
            now = _now()
            for host in self.hosts:
                not_after, serial = host.not_after()
                if not_after is not None and now > not_after:
                    key = (host.name, serial)
                    if host is self.h_offline and (host.offline or host.recovered_at < not_after):
                        self.expired_offline.add(key)   # it was not running: expected, counted apart
                    elif key not in self.expired:
                        self.expired[key] = now - self.t0
                        self.log("P6: EXPIRED %s serial %x" % key)

    # --- helpers for faults ---
    def runs_since(self, since, hosts=None):
        with self.lock:
            return [r for r in self.runs if r["start"] >= since and (hosts is None or r["host"] in hosts)]

    def others(self, exclude=()):
        return [h for h in self.hosts if h not in exclude and not h.offline]

    def all_ran_ok_since(self, since, exclude=()):
        """Every other host had a successful run that started after since, and its metrics say no failure."""
        ok = set(r["host"] for r in self.runs_since(since) if r["code"] == 0)
        for host in self.others(exclude):
            if host.name not in ok:
                return False
            if host.read_metrics().get("status", 0) == 2:
                return False
        return True

    def hosts_saw(self, since, exclude=()):
        """A failed renewer run or a critical metric on another host since `since`."""
        names = set(h.name for h in self.others(exclude))
        if any(r["code"] != 0 for r in self.runs_since(since, names)):
            return True
        return any(h.read_metrics().get("status") == 2 and h.read_metrics().get("last_attempt_timestamp_seconds", 0) >= since
                   for h in self.others(exclude))

    def vault_monitor_sees(self):
        """The Vault operator's view: a node that does not answer, is sealed, or no active node."""
        healths = [n.health() for n in self.cluster.nodes]
        return any(h is None or h.get("sealed") for h in healths) or self.cluster.leader() is None

    def vault_whole(self):
        healths = [n.health() for n in self.cluster.nodes]
        return all(h is not None and not h.get("sealed") for h in healths) and self.cluster.leader() is not None

    def delivered(self, until):
        """Every line logged through syslog(3) before `until` is in the server's remote log."""
        for client in self.clients:
            tag, sender = self.tags[client.name], self.senders[client.name]
            n = 0
            while n < sender.sent and sender.times[n] < until:
                n += 1
            if set(range(n)) - set(self.rl.seqs(self.server.remote_log, tag)):
                return False
        return True

    # --- run ---
    def run(self, seconds, faults=None):
        from labs import soak_faults  # pylint: disable=import-outside-toplevel
        self.t0 = _now()
        threads = [threading.Thread(target=f, daemon=True) for f in (self.scheduler, self.broker, self.monitor)]
        for t in threads:
            t.start()
        records = soak_faults.drive(self, seconds, faults)
        self.log("P6: faults done at %.0f s; settling" % (_now() - self.t0))
        # settle: one more timer round for everyone, one recovery round, another timer round
        settle_from = _now()
        deadline = settle_from + 3 * (PERIOD + JITTER) + 30
        while _now() < deadline and not self.all_ran_ok_since(settle_from):
            time.sleep(2)
            if _now() - settle_from > PERIOD + JITTER:
                self.recover_round()
        self.stopping.set()
        for t in threads:
            t.join(30)
        while any(h.running for h in self.hosts):
            time.sleep(0.5)
        for sender in self.senders.values():
            sender.halt.set()
        for sender in self.senders.values():
            sender.join(10)
        elapsed = _now() - self.t0
        self._drain()
        checks = {}
        for host in self.hosts:
            code, line = host.check()
            checks[host.name] = dict(code=code, line=line)
            if code == 2:
                self.person.append(host.name)
        return self.result(elapsed, records, checks)

    def _drain(self, seconds=60):
        deadline = _now() + seconds
        while _now() < deadline and not self.delivered(_now() + 1):
            time.sleep(1)

    def result(self, elapsed, records, checks):
        rows = []
        for client in self.clients:
            tag = self.tags[client.name]
            accepted = set(self.rl.seqs(client.accepted_log, tag))
            written_list = self.rl.seqs(self.server.remote_log, tag)
            written = set(written_list)
            sender = self.senders[client.name]
            rows.append(dict(client=client.name, sent=sender.sent, accepted=len(accepted),
                             written=len(written), duplicates=len(written_list) - len(written),
                             lost_from_syslog=len(set(range(sender.sent)) - written),
                             lost_between_rsyslogs=len(accepted - written), sender_error=sender.error))
        renewals = [r for r in self.runs if r["renewed"]]
        idle = [r for r in self.runs if r["code"] == 0 and not r["renewed"]]
        return dict(
            seconds=elapsed, hosts=len(self.hosts), clients=len(self.clients), rate=self.rate,
            ttl=TTL, renew_before=RENEW_BEFORE, period=PERIOD, jitter=JITTER, secret_id_ttl=SECRET_ID_TTL,
            recover_every=RECOVER_EVERY,
            expired=[dict(host=h, serial="%x" % s, at=t) for (h, s), t in sorted(self.expired.items())],
            expired_while_offline=len(self.expired_offline),
            needed_a_person=self.person, checks=checks,
            lines=rows, lost_between_rsyslogs=sum(r["lost_between_rsyslogs"] for r in rows),
            lost_from_syslog=sum(r["lost_from_syslog"] for r in rows),
            duplicates=sum(r["duplicates"] for r in rows),
            runs=len(self.runs), renewals=len(renewals), failed_runs=sum(1 for r in self.runs if r["code"] != 0),
            vault_requests_per_renewal=(sum(r["requests"] for r in renewals) / len(renewals)) if renewals else None,
            cpu_per_renewal=(sum(r["cpu"] for r in renewals) / len(renewals)) if renewals else None,
            cpu_per_idle_run=(sum(r["cpu"] for r in idle) / len(idle)) if idle else None,
            recoveries=self.recoveries, faults=records,
            loadavg=os.getloadavg())

    def close(self, keep=False):
        # An interrupted run: end soak_faults.drive's tracks first (a fault ends by undoing itself,
        # which must not restart a node after the cluster is down).
        aborting = getattr(self, "aborting", None)
        if aborting is not None:
            aborting.set()
            for thread in getattr(self, "fault_threads", ()):
                thread.join(60)
        self.stopping.set()
        for sender in self.senders.values():
            sender.stop()
        for host in self.hosts:
            host.stop_rsyslog()
        for node in self.cluster.nodes:  # a SIGSTOPped node would ignore SIGTERM
            pid = node.pid()
            if pid:
                try:
                    os.kill(pid, signal.SIGCONT)
                except OSError:
                    pass
        self.cluster.down()
        deadline = _now() + 60  # a renewer still running keeps its account from being removed
        while any(h.running for h in self.hosts) and _now() < deadline:
            time.sleep(0.5)
        for host in self.hosts:
            if getattr(host, "tmpfs", False):
                subprocess.run(["umount", host.state_dir], check=False)
            if host.account is not None:
                subprocess.run(["userdel", host.account.pw_name], check=False)
                subprocess.run(["groupdel", host.account.pw_name], check=False, stderr=subprocess.DEVNULL)
        if keep:
            self.log("P6: kept %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def run(seconds, log=print, faults=None, keep=False, **options):
    """Build the lab, soak for about `seconds` with the fault schedule repeating, tear down; the result dict."""
    lab = Soak(log=log, **options)
    try:
        lab.build()
        return lab.run(seconds, faults)
    finally:
        lab.close(keep=keep)


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------

def _s(value):
    return "-" if value is None else "%.0f s" % value


def _fmt(pattern, value):
    return "-" if value is None else pattern % value


def markdown(result):
    L = ["## P6 fleet soak: %d hosts, %.0f s (%.1f certificate lifetimes)"
         % (result["hosts"], result["seconds"], result["seconds"] / result["ttl"]), ""]
    L.append("Real processes on this machine (docs/measurements.md, P6): a 3-node OpenBao Raft cluster over HTTPS, "
             "%d hosts each with its own system account and store running the real renewer from the lab's scheduler "
             "(%d s certificates, renew_before %d s, timer every %d s + up to %d s jitter), a log server and %d "
             "rsyslog clients over RELP (%d lines/s each through syslog(3)), the broker's recovery run every %d s; secret ids live %d s."
             % (result["hosts"], result["ttl"], result["renew_before"], result["period"], result["jitter"],
                result["clients"], result["rate"], result["recover_every"], result["secret_id_ttl"]))
    L.append("")
    L.append("| measure | value | target |")
    L.append("|---|---|---|")
    L.append("| certificates expired while their host ran | %d | 0 |" % len(result["expired"]))
    L.append("| hosts that needed a person | %d %s | 0 |"
             % (len(result["needed_a_person"]), ", ".join(result["needed_a_person"])))
    L.append("| lines lost from syslog(3) to the log server's file | %d of %d | 0 |"
             % (result["lost_from_syslog"], sum(r["sent"] for r in result["lines"])))
    L.append("| lines lost between the rsyslogs | %d (duplicates %d) | 0 |"
             % (result["lost_between_rsyslogs"], result["duplicates"]))
    L.append("| renewer runs / renewals / failed runs | %d / %d / %d | |"
             % (result["runs"], result["renewals"], result["failed_runs"]))
    L.append("| Vault requests per renewal | %s | |" % _fmt("%.2f", result["vault_requests_per_renewal"]))
    L.append("| renewer CPU per renewal (user+sys) | %s | |" % _fmt("%.3f s", result["cpu_per_renewal"]))
    L.append("| renewer CPU per run with nothing to do | %s | |" % _fmt("%.3f s", result["cpu_per_idle_run"]))
    recovered = sum(1 for r in result["recoveries"] if r["ok"])
    L.append("| broker recoveries (ok / failed) | %d / %d | |" % (recovered, len(result["recoveries"]) - recovered))
    L.append("| certificates expired while their host was offline (expected) | %d | |" % result["expired_while_offline"])
    L.append("| load average at the end | %s | |" % " ".join("%.2f" % x for x in result["loadavg"]))
    L.append("")
    L.append("| fault | host | at | lasted | seen by | seen after | cleared after its end |")
    L.append("|---|---|---|---|---|---|---|")
    for f in result["faults"]:
        L.append("| %s | %s | %.0f s | %.0f s | %s | %s | %s |"
                 % (f["kind"], f.get("host") or "-", f["at"], f["lasted"], f.get("seen_by") or "**not seen**",
                    _s(f.get("seen_after")), _s(f.get("cleared_after")) if f.get("cleared") else "**not cleared**"))
    L.append("")
    for f in result["faults"]:
        if f.get("note"):
            L.append("- %s at %.0f s: %s" % (f["kind"], f["at"], f["note"]))
    return "\n".join(L) + "\n"


def save(result, directory=None):
    directory = directory or os.path.join(REPO_ROOT, "bench", "results")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "soak-%s.json" % time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
    with open(path, "w") as handle:
        json.dump(result, handle, indent=1, sort_keys=True, default=str)
    return path


def main(argv=None):
    import argparse  # pylint: disable=import-outside-toplevel
    ap = argparse.ArgumentParser(prog="python -m labs.soak", description="P6 fleet soak (root).")
    ap.add_argument("--seconds", type=int, default=3600)
    ap.add_argument("--hosts", type=int, default=HOSTS)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.seconds, hosts=args.hosts, keep=args.keep)
    print(markdown(result))
    print("written: %s" % save(result))
    ok = not (result["expired"] or result["needed_a_person"] or result["lost_between_rsyslogs"]
              or result["lost_from_syslog"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
