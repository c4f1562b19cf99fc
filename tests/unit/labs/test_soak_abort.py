# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""An interrupted soak (Ctrl-C, a test timeout) ends its fault tracks before the lab is torn down:
a fault that is still running must not undo itself (restart a node) after the cluster is down."""

from __future__ import absolute_import, division, print_function

import threading
import time

from labs import soak_faults


class _Lab(object):
    """What soak_faults.drive reads from a lab: t0, log; it adds faulted, aborting, fault_threads."""

    def __init__(self):
        self.t0 = time.time()
        self.lines = []
        self.runs = 0

    def log(self, line):
        self.lines.append(line)


def test_setting_aborting_ends_every_track_at_its_next_step():
    lab = _Lab()

    def fault(this_lab):
        this_lab.runs += 1
        return None

    result = {}
    driver = threading.Thread(target=lambda: result.setdefault("records", soak_faults.drive(
        lab, 3600, tracks=[("a", [fault]), ("b", [fault, fault])])))
    driver.start()
    deadline = time.time() + 10
    while lab.runs < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert lab.runs >= 2, "both tracks ran their first fault"
    lab.aborting.set()
    for thread in lab.fault_threads:
        thread.join(5)
    driver.join(5)
    assert not driver.is_alive(), "drive() returned although its one-hour schedule had just begun"
    runs = lab.runs
    time.sleep(0.3)
    assert lab.runs == runs, "no fault started after aborting was set"
    assert result["records"] == []
