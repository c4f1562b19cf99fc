# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Traffic for the rsyslog labs: sequence-numbered lines in, sequence numbers counted out; and waiting.

One line format for every sender (``lab-seq-<tag>-<7 digits>``), one parser (``seqs``), one waiter
(``wait_for(condition, what, seconds)``). Plain Python: no pytest here.
"""

from __future__ import absolute_import, division, print_function

import array
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

SEQ = re.compile(r"seq-([a-z0-9]+)-(\d+)")
WAIT = 90  # seconds: how long to wait for an event before calling it missing (never asserted as a time)


def line(tag, number):
    """One syslog line as the senders write it (clients' configs select lines containing "seq-")."""
    return ("<14>1 - lab - - - - lab-seq-%s-%07d\n" % (tag, number)).encode("ascii")


class _SteadySender(threading.Thread):
    """What both senders share: tag, rate, an optional count, ``sent``, ``times`` and ``halt``."""

    def __init__(self, tag, rate, count):
        threading.Thread.__init__(self, daemon=True)
        self.tag = tag
        self.rate = float(rate)
        self.count = count
        self.sent = 0
        self.times = array.array("d")
        self.halt = threading.Event()

    def stop(self, timeout=10):
        self.halt.set()
        self.join(timeout)


class Sender(_SteadySender):
    """Sequence-numbered lines at a steady rate into a client's local input on port until ``halt`` is
    set (or count lines are sent, when count is given); reconnects when the client's rsyslog restarts (a line refused then is sent again, it was never
    accepted). ``sent`` counts the lines handed to the socket, ``times`` holds when (time.time())."""

    def __init__(self, port, tag, rate=200, count=None):
        _SteadySender.__init__(self, tag, rate, count)
        self.port = port

    def run(self):
        start = time.time()
        sock = None
        while not self.halt.is_set() and (self.count is None or self.sent < self.count):
            pause = start + self.sent / self.rate - time.time()
            if pause > 0:
                time.sleep(pause)
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), 2)
                sock.sendall(line(self.tag, self.sent))
                self.times.append(time.time())
                self.sent += 1
            except OSError:
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.05)
        if sock is not None:
            sock.close()


class SyslogSender(_SteadySender):
    """Sequence-numbered lines at a steady rate through syslog(3), as an application logs, into the
    rsyslog socket at socket_path (an imuxsock input) until ``halt`` is set or count lines are sent.

    syslog(3) always writes to /dev/log. The lab must not touch the machine's /dev/log (which may be
    journald's, or missing), so the sending process runs in a mount namespace of its own
    (``unshare --mount``) with an overlay over /dev whose ``log`` points to socket_path: glibc's
    syslog(3) unchanged, one client's socket, nothing changed outside. Root only. ``sent`` counts
    the syslog(3) calls that returned, ``times`` holds when; syslog(3) reports no failure, so a line
    it could not hand over counts as lost end to end."""

    def __init__(self, socket_path, tag, rate=200, count=None):
        _SteadySender.__init__(self, tag, rate, count)
        self.socket_path = socket_path
        self.error = None

    def run(self):
        argv = ["unshare", "--mount", "--propagation", "private", sys.executable, "-m", "labs.senders",
                "syslog", self.socket_path, self.tag, str(self.rate), str(self.count or 0)]
        proc = subprocess.Popen(argv, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

        def _terminate_on_halt():
            self.halt.wait()
            if proc.poll() is None:
                proc.terminate()

        threading.Thread(target=_terminate_on_halt, daemon=True).start()
        for row in proc.stdout:
            number, stamp = row.split()
            self.times.append(float(stamp))
            self.sent = int(number) + 1
        err = proc.stderr.read().decode("utf-8", "replace").strip()
        if proc.wait() not in (0, -signal.SIGTERM) or err:
            self.error = err or "the syslog(3) sender ended with %s" % proc.returncode
        self.halt.set()


def _syslog_child(socket_path, tag, rate, count):
    """The sending process of SyslogSender, inside its own mount namespace."""
    import syslog  # pylint: disable=import-outside-toplevel
    scratch = tempfile.mkdtemp(prefix="minibus-devlog-")
    try:
        upper, work = os.path.join(scratch, "upper"), os.path.join(scratch, "work")
        os.mkdir(upper)
        os.mkdir(work)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        "lowerdir=/dev,upperdir=%s,workdir=%s" % (upper, work), "/dev"], check=True)
        if os.path.lexists("/dev/log"):
            os.unlink("/dev/log")  # in the overlay only: a whiteout in upper, the machine's stays
        os.symlink(socket_path, "/dev/log")
        wait_for(lambda: os.path.exists(socket_path), "the rsyslog socket %s" % socket_path, 30)
        stopping = []
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
        syslog.openlog("lab", syslog.LOG_NDELAY, syslog.LOG_USER)
        start = last_flush = time.time()
        number = 0
        while not stopping and (not count or number < count):
            pause = start + number / rate - time.time()
            if pause > 0:
                time.sleep(pause)
            syslog.syslog(syslog.LOG_INFO, "lab-seq-%s-%07d" % (tag, number))
            now = time.time()
            sys.stdout.write("%d %.6f\n" % (number, now))
            number += 1
            if now - last_flush > 0.2:
                sys.stdout.flush()
                last_flush = now
        sys.stdout.flush()
    finally:
        # the overlay goes with the namespace; its upper and work directories are the machine's /tmp
        subprocess.run(["umount", "-l", "/dev"], check=False)
        shutil.rmtree(scratch, ignore_errors=True)


def send_lines(port, tag, count):
    """count lines at once (numbered from 0) on one connection."""
    with socket.create_connection(("127.0.0.1", port), 5) as sock:
        for number in range(count):
            sock.sendall(line(tag, number))


def read_text(path):
    """The file's text, "" when it does not exist (yet)."""
    try:
        with open(path) as handle:
            return handle.read()
    except IOError:
        return ""


def seqs(path, tag):
    """Sequence numbers of tag's lines in path, in order, duplicates kept."""
    if not os.path.exists(path):
        return []
    return [int(m.group(2)) for m in SEQ.finditer(read_text(path)) if m.group(1) == tag]


def wait_for(condition, what, seconds=WAIT):
    """Return once condition() is true; AssertionError naming what did not happen after seconds."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("%s did not happen within %d s" % (what, seconds))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "syslog":
        _syslog_child(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]))
    else:
        sys.exit("usage: python -m labs.senders syslog SOCKET TAG RATE COUNT (0: until SIGTERM)")
