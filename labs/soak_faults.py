# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""P6's fault schedule (labs/soak.py): three tracks that repeat until the run's time is up, each
finishing the cycle it is in, so even a short run has every fault once.

* infrastructure: log server restart, kill -9 of the active Vault node (back after KILL_S), the active
  node sealed (unsealed after SEAL_S), every node SIGSTOPped for a quarter of the certificate's life;
* single hosts: kill -9 of a renewer in the middle of a renewal, the state directory full, the clock
  two minutes ahead;
* one host offline for longer than its secret id lives.

Each fault's record: when it began (s from the start), how long it lasted, when the hosts showed it
(a failed renewer run, the metrics or ``--check``) and when the lab's own monitor did (Vault's
sys/health, the log server's listener), and how long after its end everything was clear again.
"""

from __future__ import absolute_import, division, print_function

import os
import signal
import threading
import time

KILL_S = 30
SEAL_S = 30
GAP_S = 10
SKEW_S = 90
FULL_S = 60


def _now():
    return time.time()


class _Record(dict):
    def __init__(self, lab, kind, host=None):
        dict.__init__(self, kind=kind, host=host, at=_now() - lab.t0, start=_now(), lasted=0.0, cleared=False,
                      seen_by=None, seen_after=None, hosts_after=None, monitor_after=None, note="")
        self.lab = lab

    def look(self, hosts=None, monitor=None):
        """Record the first sighting by the hosts (hosts() -> label) and by the monitor (monitor() -> bool)."""
        if self["hosts_after"] is None and hosts is not None:
            label = hosts()
            if label:
                self["hosts_after"] = _now() - self["start"]
                self["seen_by"] = label
        if self["monitor_after"] is None and monitor is not None and monitor():
            self["monitor_after"] = _now() - self["start"]
        if self["seen_by"] is None and self["monitor_after"] is not None:
            self["seen_by"] = "lab monitor"
        seen = [v for v in (self["hosts_after"], self["monitor_after"]) if v is not None]
        self["seen_after"] = min(seen) if seen else None

    def hold(self, seconds, hosts=None, monitor=None):
        until = _now() + seconds
        while _now() < until and not self.lab.aborting.is_set():
            self.look(hosts, monitor)
            time.sleep(1)

    def end(self):
        self["lasted"] = _now() - self["start"]
        self.ended = _now()

    def clear(self, cleared, timeout, hosts=None, monitor=None):
        deadline = _now() + timeout
        while _now() < deadline and not self.lab.aborting.is_set():
            self.look(hosts, monitor)
            if cleared(self.ended):
                self["cleared"] = True
                self["cleared_after"] = _now() - self.ended
                return
            time.sleep(1)


def _hosts_failed(lab, rec, exclude):
    def seen():
        return "hosts (failed run / metrics)" if lab.hosts_saw(rec["start"], exclude) else None
    return seen


def _settled(lab, exclude):
    def cleared(since):
        return lab.vault_whole() and lab.all_ran_ok_since(since, exclude)
    return cleared


# --- infrastructure ---------------------------------------------------------------------------

def kill_active(lab):
    victim = lab.cluster.wait_leader()
    rec = _Record(lab, "vault active node kill -9", victim.name)
    exclude = set(lab.faulted)
    lab.vault_quiet.clear()
    try:
        lab.cluster.kill(victim)
        hosts = _hosts_failed(lab, rec, exclude)
        rec.hold(KILL_S, hosts, lab.vault_monitor_sees)
        lab.cluster.restart(victim)
        lab.cluster.wait_ready()
        rec.end()
        rec.clear(_settled(lab, exclude), 180, hosts, lab.vault_monitor_sees)
    finally:
        lab.vault_quiet.set()
    return rec


def seal_node(lab):
    victim = lab.cluster.wait_leader()
    rec = _Record(lab, "vault active node sealed", victim.name)
    exclude = set(lab.faulted)
    lab.vault_quiet.clear()
    try:
        lab.cluster.seal(victim)
        hosts = _hosts_failed(lab, rec, exclude)
        rec.hold(SEAL_S, hosts, lab.vault_monitor_sees)
        lab.cluster.unseal(victim)
        lab.cluster.wait_ready()
        rec.end()
        rec.clear(_settled(lab, exclude), 180, hosts, lab.vault_monitor_sees)
    finally:
        lab.vault_quiet.set()
    return rec


def unreachable(lab):
    from labs.soak import TTL  # pylint: disable=import-outside-toplevel
    rec = _Record(lab, "every vault node stopped (SIGSTOP)", "all")
    exclude = set(lab.faulted)
    pids = [n.pid() for n in lab.cluster.nodes]
    lab.vault_quiet.clear()
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        hosts = _hosts_failed(lab, rec, exclude)
        rec.hold(TTL / 4.0, hosts, lab.vault_monitor_sees)
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        lab.cluster.wait_ready(120)
        rec.end()
        rec.clear(_settled(lab, exclude), 240, hosts)
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        lab.vault_quiet.set()
    return rec


def log_server_restart(lab):
    rec = _Record(lab, "log server rsyslogd restart", lab.server.name)

    def listener_gone():
        return lab.server.proc is None or lab.server.proc.poll() is not None

    lab.server.stop_rsyslog()
    rec.look(None, listener_gone)
    time.sleep(3)
    lab.server.start_rsyslog()
    lab.rl.wait_port(lab.port)
    rec.end()
    rec.clear(lab.delivered, 120)
    return rec


# --- single hosts -----------------------------------------------------------------------------

def _due_at(host):
    from labs.soak import RENEW_BEFORE  # pylint: disable=import-outside-toplevel
    not_after, _serial = host.not_after()
    return (not_after or _now()) - RENEW_BEFORE


def _host_ok_since(host, lab):
    def cleared(since):
        runs = [r for r in lab.runs_since(since, [host.name]) if r["code"] == 0]
        m = host.read_metrics()
        return bool(runs) and m.get("status", 2) == 0 and m.get("last_attempt_timestamp_seconds", 0) >= since - 1
    return cleared


def _hold_host(lab, host):
    host.held = True
    while host.running:
        time.sleep(0.2)


def _release(host):
    host.held = False
    host.next_run = _now()


def renewer_kill(lab, attempts=4):
    """kill -9 of a due renewer after it marked its secret id in use (the login, rotation or signing in flight)."""
    from labs.soak import RECOVER_EVERY  # pylint: disable=import-outside-toplevel
    rec = None
    for _attempt in range(attempts):
        lab.vault_quiet.wait(600)
        candidates = [h for h in lab.hosts if h.role == "plain" and h not in lab.faulted and not h.offline]
        host = min(candidates, key=_due_at)
        lab.faulted.add(host)
        try:
            _hold_host(lab, host)
            while _now() < _due_at(host) + 0.5:
                time.sleep(0.2)
            rec = _Record(lab, "renewer kill -9 mid-renewal", host.name)
            _serial_before = host.not_after()[1]
            proc, out = host.spawn()
            deadline = _now() + 30
            while not host.ended(proc) and host.store_state() != "in-use" and _now() < deadline:
                time.sleep(0.01)
            if host.ended(proc):
                host.finish(proc, out)
                rec["note"] = "the run ended before the kill; tried another host"
                _release(host)
                continue
            time.sleep(lab.random.uniform(0.0, 0.15))
            os.kill(proc.pid, signal.SIGKILL)  # not send_signal: its poll() would reap the run and lose its CPU usage
            code, _text, _cpu = host.finish(proc, out)
            store = host.store_state()
            renewed = host.not_after()[1] != _serial_before
            check_code, check_line = host.check()
            rec["note"] = ("killed (exit %d) with the secret id store %s, certificate %s; --check right after: %s"
                           % (code, store, "already replaced" if renewed else "not replaced", check_line[:160]))
            if check_code != 0:
                rec["hosts_after"] = _now() - rec["start"]
                rec["seen_by"] = "--check (exit %d)" % check_code
                rec["seen_after"] = rec["hosts_after"]
            rec.end()
            _release(host)
            if check_code == 0 and renewed:
                rec["note"] += "; nothing left to see (the run had finished its work): tried another host"
                rec["harmless"] = True
                continue
            rec.clear(_host_ok_since(host, lab), 3 * RECOVER_EVERY + 120)
            return rec
        finally:
            _release(host)
            lab.faulted.discard(host)
    return rec


def state_full(lab):
    """The host's state directory (a 256 KiB tmpfs) filled by root shortly before its renewal is due."""
    from labs.soak import PERIOD  # pylint: disable=import-outside-toplevel
    host = lab.h_full
    lab.faulted.add(host)
    filler = os.path.join(host.state_dir, ".soak-fill")
    try:
        while _now() < _due_at(host) - PERIOD:
            time.sleep(0.5)
        rec = _Record(lab, "state directory full", host.name)
        with open(filler, "wb", buffering=0) as handle:  # unbuffered: close() has nothing left to flush
            for size in (65536, 4096, 512, 1):
                try:
                    while True:
                        handle.write(b"\0" * size)
                        handle.flush()
                except OSError:
                    pass
        checked = []

        def seen():
            failed = [r for r in lab.runs_since(rec["start"], [host.name]) if r["code"] != 0]
            if failed and not checked:
                checked.append(host.check())
            if failed:
                return "failed renewer run"
            return None

        rec.hold(FULL_S, seen)
        os.unlink(filler)
        rec.end()
        if checked:
            rec["note"] = "--check during it: %s" % checked[0][1][:160]
        rec.clear(_host_ok_since(host, lab), 180, seen)
        return rec
    finally:
        if os.path.exists(filler):
            os.unlink(filler)
        lab.faulted.discard(host)


def clock_skew(lab):
    from labs.soak import SKEW  # pylint: disable=import-outside-toplevel
    host = lab.h_skew
    lab.faulted.add(host)
    try:
        rec = _Record(lab, "clock %s (libfaketime)" % SKEW, host.name)
        host.skewed = True

        def seen():
            m = host.read_metrics()
            if m.get("last_attempt_timestamp_seconds", 0) - _now() > 60:
                return "metrics (last attempt stamped %d s ahead)" % (m["last_attempt_timestamp_seconds"] - _now())
            return None

        rec.hold(SKEW_S, seen)
        host.skewed = False
        rec.end()
        ok = _host_ok_since(host, lab)

        def cleared(since):
            m = host.read_metrics()
            return ok(since) and abs(m.get("last_attempt_timestamp_seconds", 0) - _now()) < 60
        rec.clear(cleared, 180, seen)
        skewed_runs = [r for r in lab.runs if r["host"] == host.name and r.get("skewed")]
        rec["note"] = "%d runs with the skewed clock, %d renewals, %d failed" % (
            len(skewed_runs), sum(1 for r in skewed_runs if r["renewed"]), sum(1 for r in skewed_runs if r["code"]))
        return rec
    finally:
        host.skewed = False
        lab.faulted.discard(host)


# --- offline ----------------------------------------------------------------------------------

def offline(lab):
    from labs.soak import JITTER, PERIOD, RECOVER_EVERY, SECRET_ID_TTL  # pylint: disable=import-outside-toplevel
    host = lab.h_offline
    lab.faulted.add(host)
    try:
        _hold_host(lab, host)
        host.offline = True
        host.held = False
        rec = _Record(lab, "host offline (renewer not run) > secret id life", host.name)

        def seen():
            m = host.read_metrics()
            # a host that has not run since it was bootstrapped has no metrics yet: stale from the fault's start
            last = m.get("last_attempt_timestamp_seconds") or rec["start"]
            if host.offline and _now() - last > 2 * (PERIOD + JITTER) + 10:
                return "metrics stale (no run for %d s)" % (_now() - last)
            if not host.offline and m.get("status") == 2:
                return "metrics (%s)" % m.get("state")
            return None

        rec.hold(SECRET_ID_TTL + 30, seen)
        host.offline = False
        host.next_run = _now()
        rec.end()
        rec.clear(_host_ok_since(host, lab), 3 * RECOVER_EVERY + 3 * (PERIOD + JITTER) + 60, seen)
        rec["note"] = "recovered by the broker's run: %s" % (
            "yes" if any(r["host"] == host.name and r["at"] >= rec.ended and r["ok"] for r in lab.recoveries) else "no")
        return rec
    finally:
        host.offline = False
        lab.faulted.discard(host)


TRACKS = (
    ("infrastructure", (log_server_restart, kill_active, seal_node, unreachable)),
    ("hosts", (renewer_kill, state_full, clock_skew)),
    ("offline", (offline,)),
)


def drive(lab, seconds, tracks=None):
    """Run every track until `seconds` from lab.t0 have passed (each finishes its cycle); the records."""
    records = []
    lab.faulted = set()
    lab.vault_quiet = threading.Event()
    lab.vault_quiet.set()
    lab.aborting = threading.Event()
    stop_at = lab.t0 + seconds

    def track(name, faults):
        while True:
            for fault in faults:
                if lab.aborting.is_set():  # the lab is being torn down (an interrupted run)
                    return
                try:
                    rec = fault(lab)
                except Exception as exc:  # pylint: disable=broad-except
                    lab.log("P6: fault %s failed: %s" % (fault.__name__, exc))
                    rec = {"kind": fault.__name__, "at": _now() - lab.t0, "lasted": 0, "cleared": False,
                           "note": "the lab failed: %s" % exc}
                if rec is not None:
                    rec = dict(rec)
                    rec.pop("start", None)
                    records.append(rec)
                    lab.log("P6: %-48s seen by %s after %s, cleared %s" % (
                        rec["kind"], rec.get("seen_by"), rec.get("seen_after"), rec.get("cleared_after")))
                lab.aborting.wait(GAP_S)
            if _now() >= stop_at:
                return

    threads = [threading.Thread(target=track, args=t, daemon=True) for t in (TRACKS if tracks is None else tracks)]
    lab.fault_threads = threads
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    records.sort(key=lambda r: r["at"])
    return records
