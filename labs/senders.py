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
import socket
import threading
import time

SEQ = re.compile(r"seq-([a-z0-9]+)-(\d+)")
WAIT = 90  # seconds: how long to wait for an event before calling it missing (never asserted as a time)


def line(tag, number):
    """One syslog line as the senders write it (clients' configs select lines containing "seq-")."""
    return ("<14>1 - lab - - - - lab-seq-%s-%07d\n" % (tag, number)).encode("ascii")


class Sender(threading.Thread):
    """Sequence-numbered lines at a steady rate into a client's local input on port until ``halt`` is
    set (or count lines are sent, when count is given); reconnects when the client's rsyslog restarts (a line refused then is sent again, it was never
    accepted). ``sent`` counts the lines handed to the socket, ``times`` holds when (time.time())."""

    def __init__(self, port, tag, rate=200, count=None):
        threading.Thread.__init__(self, daemon=True)
        self.port = port
        self.tag = tag
        self.rate = float(rate)
        self.count = count
        self.sent = 0
        self.times = array.array("d")
        self.halt = threading.Event()

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

    def stop(self, timeout=10):
        self.halt.set()
        self.join(timeout)


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
