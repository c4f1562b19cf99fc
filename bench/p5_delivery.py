# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""P5 (make bench): delivery across forced renewals, and the TLS session bound with short-lived certificates.

Both runs use the lab of labs/rsyslog.py and labs/senders.py (also used by the rotation test): a real
OpenBao over HTTPS bootstrapped with playbooks/vault_bootstrap.yml (its own instance), a log server and
two clients with real renewer configs, one real rsyslogd per host from the role's minibus-tls.conf.j2
(RELP over TLS, the role's default), everything on loopback.

With RELP a renewal restarts nothing (librelp reads the host's certificate chain and key for every new
TLS session, docs/design.md): a renewal is the renewer alone, and the only restarts are the server's
session bound (minibus-certs-session-bound.timer), after which every client opens a new session with the
certificate it has on disk.

* delivery_run: sequence-numbered lines logged through syslog(3) on each client (senders.SyslogSender:
  glibc's syslog(3) into the client rsyslog's own socket, its /dev/log in a mount namespace; these
  hosts have no journald, whose hop Molecule measures on real hosts; each accepted line is written to
  a local file before the role's snippet forwards it) at a steady rate; the server and each client renewed (renewer --force, no restart) N times, and
  the server's rsyslog restarted (the session bound) every seconds/6, both spread through the run; the
  rsyslogd pids are recorded to show that only the bound restarts anything. Counted per client: sent,
  accepted by the client's rsyslog, written by the server, duplicates, lost end to end (sent, never
  written), lost between the rsyslogs (accepted, never written), and where: the lost sequence ranges,
  when they were sent and the nearest renewal/restart.
* coincident_run: what renewals no longer cause, kept as a measurement: the server's rsyslog restarted
  (its session bound) and one client's shortly after (a client restarted for another reason: a config
  change or a package upgrade), five times, the other client left alone as the control.
* session_run: certificates with a short TTL, the renewer run on a schedule without --force (it renews
  when due, like the timer; nothing restarts), the server's rsyslog restarted every max session age
  (minibus-certs-session-bound.timer), the only restarts: the end-to-end proof that clients present
  their renewed certificate when they reconnect (one still presenting an expired certificate would lose
  everything after the next bound). The server's connection table (ss) is sampled every few seconds;
  each RELP session (server side, keyed by the client's source port and the server's pid) is tracked
  from first to last sighting. Reported: the oldest session age seen against the bound, and how long any
  session lived past the notAfter of the client certificate on disk when it was first seen.

Reports, never asserts. The machine may be shared: the report carries the load average.
"""

from __future__ import absolute_import, division, print_function

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time

from labs import rsyslog as rl
from labs.senders import SyslogSender, seqs, wait_for
from labs.vault import Vault, free_port

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)


# --------------------------------------------------------------------------------------------------
# the lab: a Vault, a server and two clients
# --------------------------------------------------------------------------------------------------

class Lab(object):
    def __init__(self, log, first_ttl="1h", ttl="1h"):
        self.log = log
        self.work = tempfile.mkdtemp(prefix="minibus-p5-")
        os.makedirs(os.path.join(self.work, "bao"))
        self.vault = Vault(os.path.join(self.work, "bao"))
        self.first_ttl, self.ttl = first_ttl, ttl
        self.hosts = []

    def start_vault(self):
        self.vault.start()
        self.vault.bootstrap()
        self.log("P5: OpenBao at %s, bootstrapped" % self.vault.url)

    def build(self, name):
        """Fresh host directories under work/name, bootstrapped, rsyslog configs rendered, rsyslogds started."""
        work = os.path.join(self.work, name)
        os.makedirs(work)
        root_path = os.path.join(self.vault.dir, "root-ca.pem")
        hosts = [rl.Host(work, rl.SERVER, "server", self.first_ttl, self.ttl)] + \
            [rl.Host(work, c, "client", self.first_ttl, self.ttl) for c in rl.CLIENTS]
        for host in hosts:
            shutil.copyfile(root_path, host.trust_anchor)
            host.bootstrap(self.vault)
        self.port = free_port()
        rl.render_rsyslog_confs([(h, rl.role_vars(h, self.port)) for h in hosts])
        for host in hosts:
            host.write_conf(syslog_socket=host.syslog_socket if host.role == "client" else None)
        self.hosts = hosts
        self.server, self.clients = hosts[0], hosts[1:]
        self.tags = dict((c.name, "c%d" % (i + 1)) for i, c in enumerate(self.clients))
        self.server.start()
        rl.wait_port(self.port)
        for client in self.clients:
            client.start()
            self._wait_ready(client)

    def _wait_ready(self, host):
        if host is self.server:
            rl.wait_port(self.port)
        else:
            wait_for(lambda: os.path.exists(host.syslog_socket), "%s's rsyslog socket" % host.name, 30)

    def senders(self, rate):
        senders = dict((c.name, SyslogSender(c.syslog_socket, self.tags[c.name], rate)) for c in self.clients)
        for sender in senders.values():
            sender.start()
        return senders

    def restart(self, host):
        host.restart()
        self._wait_ready(host)

    def stop_hosts(self):
        for host in self.hosts:
            host.stop()
        self.hosts = []

    def close(self, keep=False):
        self.stop_hosts()
        self.vault.stop()
        if keep:
            self.log("P5: kept %s" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def _stop(senders):
    for sender in senders.values():
        sender.halt.set()
    for sender in senders.values():
        sender.join(10)


def _drain(lab, seconds=120):
    """Wait until every accepted line is on the server, or nothing more arrives for 20 s (counted then)."""
    deadline, last, last_change = time.time() + seconds, None, time.time()
    while time.time() < deadline:
        missing = 0
        for client in lab.clients:
            tag = lab.tags[client.name]
            missing += len(set(seqs(client.accepted_log, tag)) - set(seqs(lab.server.remote_log, tag)))
        if missing == 0:
            return
        if missing != last:
            last, last_change = missing, time.time()
        elif time.time() - last_change > 20:
            return
        time.sleep(1)


def _settle(lab, senders, t0, events, cutoff=None):
    """After the senders stopped: the run's length, the clients' queues drained, the counts, the hosts
    stopped. Returns (elapsed, rows of _count)."""
    elapsed = time.time() - t0
    _drain(lab)
    rows = _count(lab, senders, t0, events, elapsed, cutoff=cutoff)
    lab.stop_hosts()
    return elapsed, rows


def _ranges(numbers):
    """Sorted ints as (first, last) runs."""
    runs = []
    for n in sorted(numbers):
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return [tuple(r) for r in runs]


def _where(runs, times, t0, events, limit=8, window=3.0):
    """Each lost run: its sequence numbers, when its first line was sent (s from start) and the events
    within `window` s of it (else the nearest one)."""
    out = []
    for first, last in runs[:limit]:
        sent_at = times[first] - t0 if first < len(times) else None
        near = ""
        if sent_at is not None and events:
            close = [e for e in events if abs(e["at"] - sent_at) <= window] or \
                [min(events, key=lambda e: abs(e["at"] - sent_at))]
            near = ", " + ", ".join("%+.1f s from %s of %s" % (sent_at - e["at"], e["what"], e["host"].split(".")[0])
                                    for e in close)
        when = "%.1f" % sent_at if sent_at is not None else "?"
        out.append("%d–%d (%d) sent at %s s%s" % (first, last, last - first + 1, when, near))
    if len(runs) > limit:
        out.append("… %d more runs" % (len(runs) - limit))
    return "; ".join(out)


def _count(lab, senders, t0, events, elapsed, cutoff=None):
    """Per client: sent, accepted, written, duplicates, lost end to end / between the rsyslogs / before
    the client's rsyslog, and where. cutoff (client name -> epoch): lines that client sent from then on
    are counted apart (refused_after), not as lost."""
    rows = []
    for client in lab.clients:
        tag, sender = lab.tags[client.name], senders[client.name]
        accepted = set(seqs(client.accepted_log, tag))
        written_list = seqs(lab.server.remote_log, tag)
        written = set(written_list)
        sent = set(range(sender.sent))
        after = set()
        if cutoff and client.name in cutoff:
            after = set(n for n in sent if sender.times[n] >= cutoff[client.name])
        lost_e2e = sent - written - after
        lost_hop = (accepted - written) - after
        lost_local = lost_e2e - lost_hop  # sent but never accepted by the client's rsyslog
        rows.append(dict(client=client.name, sent=sender.sent, rate=sender.sent / elapsed if elapsed else 0,
                         accepted=len(accepted), written=len(written), duplicates=len(written_list) - len(written),
                         lost_e2e=len(lost_e2e), lost_hop=len(lost_hop), lost_local=len(lost_local),
                         after=len(after), after_written=len(after & written),
                         after_last=(max(sender.times[n] for n in after & written) - cutoff[client.name])
                         if after & written else None,
                         where_hop=_where(_ranges(lost_hop), sender.times, t0, events),
                         where_local=_where(_ranges(lost_local), sender.times, t0, events)))
    return rows


# --------------------------------------------------------------------------------------------------
# delivery under forced renewals
# --------------------------------------------------------------------------------------------------

BOUNDS = 5  # server restarts (the session bound) per delivery row, at seconds/6 intervals


def delivery_run(lab, rate, seconds, renewals):
    """One row: two clients at `rate` lines/s each for `seconds`, `renewals` forced renewals per host (no
    restart) and BOUNDS session-bound restarts of the server, spread through the run."""
    lab.build("delivery-%d" % rate)
    hosts = [lab.server] + list(lab.clients)
    plan = [(seconds * (k + 0.5) / (renewals * len(hosts)), "renewal", hosts[k % len(hosts)])
            for k in range(renewals * len(hosts))]
    plan += [(seconds * (k + 1) / (BOUNDS + 1), "session-bound restart", lab.server) for k in range(BOUNDS)]
    plan.sort(key=lambda p: p[0])
    lab.log("P5 delivery: %d/s per client for %d s, %d renewals per host (server and both clients, no restart), "
            "%d server restarts (session bound)" % (rate, seconds, renewals, BOUNDS))
    senders = lab.senders(rate)
    pids = dict((h.name, [h.pid]) for h in hosts)  # every pid each host's rsyslogd had, in order
    t0 = time.time()
    events = []
    try:
        for offset, what, host in plan:
            if t0 + offset > time.time():
                time.sleep(t0 + offset - time.time())
            began = time.time()
            if what == "renewal":
                host.renew(force=True)
                events.append(dict(host=host.name, what=what, at=began - t0, took=time.time() - began,
                                   serial=host.certificate().serial_number))
            else:
                lab.restart(host)
                events.append(dict(host=host.name, what=what, at=began - t0, took=time.time() - began))
            for h in hosts:
                if pids[h.name][-1] != h.pid:
                    pids[h.name].append(h.pid)
        if t0 + seconds > time.time():
            time.sleep(t0 + seconds - time.time())
    finally:
        _stop(senders)
    elapsed, rows = _settle(lab, senders, t0, events)
    counts = dict((h.name, sum(1 for e in events if e["host"] == h.name and e["what"] == "renewal")) for h in hosts)
    return dict(rate=rate, seconds=seconds, elapsed=elapsed, renewals=counts, events=events, rows=rows,
                bounds=sum(1 for e in events if e["what"] != "renewal"), pids=pids)


def coincident_run(lab, rate, gap, pairs=5, spacing=4.0):
    """Restarts that coincide: `pairs` times, the server's rsyslog restarted (its session bound) and
    client1's `gap` s later (a client restarted for another reason: a config change, a package upgrade;
    no longer a renewal), client2 left alone as the control. No renewal."""
    lab.build("coincident-%g" % gap)
    lab.log("P5 coincident restarts: %d/s, %d server restarts each followed by client1's after %.1f s" % (rate, pairs, gap))
    senders = lab.senders(rate)
    t0 = time.time()
    events = []
    try:
        for pair in range(pairs):
            time.sleep(spacing)
            lab.log("  pair %d of %d" % (pair + 1, pairs))
            events.append(dict(host=lab.server.name, what="restart", at=time.time() - t0))
            lab.restart(lab.server)
            time.sleep(gap)
            events.append(dict(host=lab.clients[0].name, what="restart", at=time.time() - t0))
            lab.restart(lab.clients[0])
        time.sleep(spacing)
    finally:
        _stop(senders)
    elapsed, rows = _settle(lab, senders, t0, events)
    return dict(rate=rate, gap=gap, pairs=pairs, elapsed=elapsed, rows=rows)


# --------------------------------------------------------------------------------------------------
# session bound with short-lived certificates
# --------------------------------------------------------------------------------------------------

_USERS_PID = re.compile(r"pid=(\d+)")


def _connections(port):
    """Established TCP connections touching port: (local port, peer port, pid) for each end ss shows."""
    out = subprocess.run(["ss", "-Htnp", "state", "established", "( sport = :%d or dport = :%d )" % (port, port)],
                         stdout=subprocess.PIPE, universal_newlines=True, check=False).stdout
    rows = []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        local, peer = fields[2], fields[3]
        pid = _USERS_PID.search(line)
        rows.append((int(local.rsplit(":", 1)[1]), int(peer.rsplit(":", 1)[1]), int(pid.group(1)) if pid else None))
    return rows


class _Sampler(threading.Thread):
    """Reads the connection table every `interval` s: server-side rows are the sessions (key: client's
    source port and the server's pid), client-side rows name the client by its rsyslogd's pid."""

    def __init__(self, lab, interval):
        threading.Thread.__init__(self, daemon=True)
        self.lab, self.interval = lab, interval
        self.sessions = {}
        self.samples = 0
        self.stopping = threading.Event()

    def run(self):
        port = self.lab.port
        while not self.stopping.is_set():
            now = time.time()
            pids = dict((c.proc.pid, c.name) for c in self.lab.clients if c.proc is not None)
            rows = _connections(port)
            owner = dict((local, pids.get(pid)) for local, peer, pid in rows if peer == port)
            for local, peer, pid in rows:
                if local != port:
                    continue
                key = (peer, pid)
                record = self.sessions.setdefault(key, dict(first=now, last=now, client=owner.get(peer)))
                record["last"] = now
                record["client"] = record["client"] or owner.get(peer)
            self.samples += 1
            self.stopping.wait(self.interval)


def session_run(lab, ttl_s, bound_s, seconds, rate, check_s, sample_s):
    """Short-lived certificates, the renewer when due (no restart), the server restarted every bound (the
    only restarts); sessions sampled. The last client never renews: it stands for a client holding a stolen
    key (it does not cooperate), its certificate expires during the run, and only the server's restarts
    end its session. Client1 renews without restarting: each bound, its new session presents the
    certificate then on disk; lines it loses count as lost."""
    lab.build("sessions")
    stale = lab.clients[-1]
    lab.log("P5 session bound: %d s certificates, bound %d s, %d s, renewer every %d s, ss every %d s"
            % (ttl_s, bound_s, seconds, check_s, sample_s))
    senders = lab.senders(rate)
    sampler = _Sampler(lab, sample_s)
    t0 = time.time()
    history = dict((h.name, [(t0, h.certificate())]) for h in lab.hosts)  # (installed at, certificate), in order
    sampler.start()
    events = []
    pids = dict((h.name, [h.pid]) for h in lab.hosts)
    next_check, next_bound = t0 + check_s, t0 + bound_s
    try:
        while time.time() < t0 + seconds:
            now = time.time()
            if now >= next_bound:  # minibus-certs-session-bound.timer on the server
                lab.restart(lab.server)
                events.append(dict(host=lab.server.name, what="session-bound restart", at=now - t0))
                next_bound += bound_s
            if now >= next_check:  # minibus-certs-renew.timer: the renewer decides; nothing restarts
                for host in [h for h in lab.hosts if h is not stale]:
                    serial = host.certificate().serial_number
                    host.renew(force=False)
                    if host.certificate().serial_number != serial:
                        history[host.name].append((time.time(), host.certificate()))
                        events.append(dict(host=host.name, what="renewal", at=time.time() - t0))
                next_check += check_s
            for h in lab.hosts:
                if pids[h.name][-1] != h.pid:
                    pids[h.name].append(h.pid)
            time.sleep(max(0.0, min(next_check, next_bound, t0 + seconds) - time.time()))
    finally:
        sampler.stopping.set()
        sampler.join(10)
        _stop(senders)
    stale_not_after = stale.certificate().not_valid_after_utc.timestamp()  # it never renews
    elapsed, rows = _settle(lab, senders, t0, events, cutoff={stale.name: stale_not_after})

    def opened_with(client, first):
        cert = history[client][0][1]
        for installed, candidate in history[client]:
            if installed <= first:
                cert = candidate
        return cert

    sessions = []
    for (src, pid), rec in sampler.sessions.items():
        row = dict(src=src, pid=pid, client=rec["client"], first=rec["first"] - t0, last=rec["last"] - t0,
                   age=rec["last"] - rec["first"])
        if rec["client"] in history:
            not_after = opened_with(rec["client"], rec["first"]).not_valid_after_utc.timestamp()
            row["past_not_after"] = rec["last"] - not_after
        sessions.append(row)
    sessions.sort(key=lambda r: -r["age"])
    return dict(ttl=ttl_s, bound=bound_s, seconds=seconds, elapsed=elapsed, check=check_s, sample=sample_s, rate=rate,
                samples=sampler.samples, sessions=sessions, events=events, rows=rows, stale=stale.name, pids=pids,
                stale_not_after=stale_not_after - t0,
                renewals=dict((h, len(v) - 1) for h, v in history.items()))


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------

def _table(L, rows):
    L.append("| client | sent (rate) | accepted by client rsyslog | written by server (distinct) | duplicates | "
             "lost end to end | lost between rsyslogs | lost before the client's rsyslog |")
    L.append("|---|---|---|---|---|---|---|---|")
    for r in rows:
        L.append("| %s | %d (%.0f/s) | %d | %d | %d | %d | %d | %d |"
                 % (r["client"], r["sent"], r["rate"], r["accepted"], r["written"], r["duplicates"],
                    r["lost_e2e"], r["lost_hop"], r["lost_local"]))
    L.append("")


def _where_lines(L, rows):
    for r in rows:
        if r["where_hop"]:
            L.append("- %s, lost between rsyslogs: %s" % (r["client"], r["where_hop"]))
        if r["where_local"]:
            L.append("- %s, lost before its rsyslog accepted them: %s" % (r["client"], r["where_local"]))


def _pid_counts(pids):
    return ", ".join("%s %d" % (h.split(".")[0], len(v)) for h, v in pids.items())


def _pid_line(L, pids):
    L.append("rsyslogd processes per host during the run (1 = never restarted): %s." % _pid_counts(pids))


def markdown(result, shortened=False):
    """The P5 section of the bench report."""
    L = []
    label = " (shortened run)" if shortened else ""
    L.append("## P5 delivery across renewals and the TLS session bound%s" % label)
    L.append("")
    L.append("Lab on loopback: real OpenBao over HTTPS, real renewer, one rsyslogd per host from the role's "
             "minibus-tls.conf.j2 (RELP over TLS). Lines are logged through syslog(3) on each client, "
             "into that client's rsyslog socket (its /dev/log; journald not involved: Molecule measures that hop on "
             "real hosts); \"accepted\" = written by the client's rsyslog to its local file, "
             "\"written\" = distinct lines in the server's remote log; \"lost end to end\" = logged by syslog(3), "
             "never written; \"lost before the client's rsyslog\" = logged but never accepted (glibc's syslog(3) "
             "drops a line silently while the socket is gone: a restart of that rsyslog). Renewals: renewer `--force` alone, no rsyslog restart "
             "(RELP: librelp reads the certificate chain and key for every new session); the server's rsyslog "
             "is restarted by its session bound (minibus-certs-session-bound), and every client then opens a "
             "new session with the certificate it has on disk.")
    L.append("")
    for run in result.get("delivery", []):
        L.append("### %d lines/s per client, %d s (%.0f s measured), renewals without restart: %s; "
                 "server restarts by the session bound: %d"
                 % (run["rate"], run["seconds"], run["elapsed"],
                    ", ".join("%s %d" % (h.split(".")[0], n) for h, n in run["renewals"].items()), run["bounds"]))
        L.append("")
        _table(L, run["rows"])
        target = "0 lost from syslog(3) to the server's file at %s/s" % ("1,000" if run["rate"] >= 1000 else "300")
        met = all(r["lost_e2e"] == 0 for r in run["rows"])
        if run["rate"] not in (300, 1000):
            target += " (this row: %d/s)" % run["rate"]
        L.append("Target %s: **%s**." % (target, "met" if met else "missed"))
        _where_lines(L, run["rows"])
        L.append("")
        L.append("Events (s from start: what, host, took s): " + "; ".join(
            "%.1f: %s %s %.1f" % (e["at"], "bound" if e["what"] != "renewal" else "renewal", e["host"].split(".")[0],
                                  e["took"]) for e in run["events"]))
        L.append("")
        _pid_line(L, run["pids"])
        L.append("")
    for c in result.get("coincident", []):
        L.append("### Coincident restarts: %d/s, %d × (server restart, then client1's %.1f s later); client2 untouched"
                 % (c["rate"], c["pairs"], c["gap"]))
        L.append("")
        L.append("No renewal restarts a RELP host any more: this is a client restarted for another reason (a "
                 "config change, a package upgrade) within %.1f s of the server's session-bound restart." % c["gap"])
        L.append("")
        _table(L, c["rows"])
        _where_lines(L, c["rows"])
        L.append("")
    s = result.get("sessions")
    if s:
        stale = s["stale"].split(".")[0]
        L.append("### Short-lived certificates: %d s TTL, session bound %d s, %d s (%.0f s measured)"
                 % (s["ttl"], s["bound"], s["seconds"], s["elapsed"]))
        L.append("")
        L.append("The renewer without `--force` every %d s on the server and client1 (it renews when a third of the "
                 "lifetime is left; nothing is restarted: client1 presents its renewed certificate when it reconnects "
                 "after the server's next bound, and an expired one would lose every line after it); %s never "
                 "renews (a client with a stolen key does not cooperate): its certificate expires %.0f s into the run. "
                 "The server's rsyslog is restarted every %d s (minibus-certs-session-bound). The server's connection "
                 "table (`ss -tnp state established`) is read every %d s (%d samples); a session is a server end, keyed "
                 "by the client's source port and the server's pid; its age = last − first sighting (a lower bound, up "
                 "to one sample short); the certificate that opened it = the client's certificate on disk at its "
                 "first sighting. %d lines/s per client."
                 % (s["check"], stale, s["stale_not_after"], s["bound"], s["sample"], s["samples"], s["rate"]))
        L.append("")
        sessions = s["sessions"]
        oldest = sessions[0]["age"] if sessions else 0.0
        L.append("| measure | value |")
        L.append("|---|---|")
        L.append("| sessions seen | %d |" % len(sessions))
        L.append("| renewals | %s |" % ", ".join("%s %d" % (h.split(".")[0], n) for h, n in s["renewals"].items()))
        L.append("| server restarts by the session bound | %d |"
                 % sum(1 for e in s["events"] if e["what"] == "session-bound restart"))
        L.append("| rsyslogd processes per host during the run | %s |" % _pid_counts(s["pids"]))
        L.append("| oldest session age seen | %.1f s (bound %d s, sampled every %d s: %s) |"
                 % (oldest, s["bound"], s["sample"], "within" if oldest <= s["bound"] + s["sample"] else "**beyond**"))
        # A TCP connection first seen after its client's certificate expired cannot be a session that
        # certificate opened (the handshake is refused, the connection lives a moment): counted apart.
        for who, pick in (("renewing clients", lambda r: r["client"] != s["stale"]),
                          ("%s (never renews)" % stale, lambda r: r["client"] == s["stale"])):
            mine = [r for r in sessions if "past_not_after" in r and pick(r)]
            opened = [r for r in mine if r["past_not_after"] - r["age"] <= 0]
            late = [r for r in mine if r["past_not_after"] - r["age"] > 0]
            past = [r["past_not_after"] for r in opened]
            if not past:
                value = "no session seen"
            elif max(past) > 0:
                value = "%.1f s past notAfter (%s the bound of %d s, sampled every %d s)" % (
                    max(past), "**beyond**" if max(past) > s["bound"] + s["sample"] else "within", s["bound"], s["sample"])
            else:
                value = "none outlived its certificate (closest: %.1f s before notAfter)" % -max(past)
            L.append("| longest a session outlived the certificate that opened it, %s | %s |" % (who, value))
            if late:
                L.append("| %s: connections first seen after the certificate expired (refused handshakes) | %d, "
                         "longest seen %.1f s |" % (who, len(late), max(r["age"] for r in late)))
        if s.get("rows"):
            refused = [r for r in s["rows"] if r["after"]]
            for r in refused:
                L.append("| %s lines sent after its notAfter | %d, of which the server wrote %d%s |"
                         % (r["client"].split(".")[0], r["after"], r["after_written"],
                            " (the last one sent %.1f s after notAfter; bound %d s)" % (r["after_last"], s["bound"])
                            if r["after_last"] is not None else ""))
        L.append("")
        if s.get("rows"):
            L.append("Delivery in this run (%s's lines from its notAfter on are left out of \"lost\"):" % stale)
            L.append("")
            _table(L, s["rows"])
            _where_lines(L, s["rows"])
            L.append("")
        L.append("Oldest sessions (client, s from start first–last, age): " + "; ".join(
            "%s %.0f–%.0f %.1f s" % ((r["client"] or "?").split(".")[0], r["first"], r["last"], r["age"])
            for r in sessions[:5]))
        L.append("")
    return "\n".join(L)


def run(args, log):
    """Both runs with the bench's options; returns the result dict for markdown()."""
    result = {"delivery": []}
    lab = Lab(log)
    try:
        lab.start_vault()
        for rate in (args.p5_rate, args.p5_low_rate):
            if rate:
                result["delivery"].append(delivery_run(lab, rate, args.p5_seconds, args.p5_renewals))
        result["coincident"] = [coincident_run(lab, args.p5_low_rate or 300, gap) for gap in args.p5_coincident]
    finally:
        lab.close(keep=args.keep)
    if args.p5_short_seconds:
        ttl = args.p5_short_ttl
        lab = Lab(log, first_ttl="%ds" % ttl, ttl="%ds" % ttl)
        try:
            lab.start_vault()
            result["sessions"] = session_run(lab, ttl, args.p5_short_bound, args.p5_short_seconds, args.p5_short_rate,
                                             check_s=max(5, ttl // 30), sample_s=2)
        finally:
            lab.close(keep=args.keep)
    return result


def add_arguments(ap):
    """P5's options on run_bench.py's parser (defaults: the full P5, 300 s per rate and 20 minutes of short-lived certificates)."""
    ap.add_argument("--skip-p5", action="store_true", help="skip P5 (about 35 min)")
    ap.add_argument("--only-p5", action="store_true", help="only P5 (P1-P4 skipped)")
    ap.add_argument("--p5-seconds", type=int, default=300, help="P5 delivery: seconds per row (300)")
    ap.add_argument("--p5-rate", type=int, default=1000, help="P5 delivery: lines/s per client, first row (1000)")
    ap.add_argument("--p5-low-rate", type=int, default=300, help="P5 delivery: second row's rate, 0 to skip (300)")
    ap.add_argument("--p5-renewals", type=int, default=5, help="P5 delivery: forced renewals per host (5)")
    ap.add_argument("--p5-coincident", type=float, nargs="*", default=[0.3, 3.0], metavar="GAP",
                    help="P5 coincident restarts: for each GAP, 5 server restarts each followed by client1's GAP s later "
                         "(0.3 3.0; none: skip)")
    ap.add_argument("--p5-short-seconds", type=int, default=1200,
                    help="P5 short-lived certificates: seconds, 0 to skip (1200)")
    ap.add_argument("--p5-short-ttl", type=int, default=300, help="P5 short-lived certificates: TTL seconds (300)")
    ap.add_argument("--p5-short-bound", type=int, default=120,
                    help="P5 short-lived certificates: max session age seconds, the server's restart interval (120)")
    ap.add_argument("--p5-short-rate", type=int, default=100, help="P5 short-lived certificates: lines/s per client (100)")
