# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""P6's fleet soak, short: labs/soak.py with every fault of its schedule once (about 10 minutes; make test-soak,
part of make test).

20 hosts, each its own account and store, the real renewer against the 3-node Raft cluster, five
rsyslog clients logging through syslog(3) and a log server over RELP, 5-minute certificates. Asserted:
no certificate expired while its host ran, no host needed a person, no line lost from syslog(3) to the
log server's file (nor between the rsyslogs), every fault seen (by the hosts or the lab's monitor)
and cleared. Times are reported (bench: make bench, P6), not asserted.
"""

from __future__ import absolute_import, division, print_function

import os
import shutil

import pytest

from labs import soak

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("rsyslogd"),
                                reason="needs root (accounts, a tmpfs), useradd and rsyslogd")

SECONDS = int(os.environ.get("MINIBUS_SOAK_SECONDS", "300"))


def test_a_short_soak_with_every_fault_needs_no_person_and_loses_nothing():
    assert os.path.exists(soak.FAKETIME_LIB), "libfaketime is missing: apt-get install faketime (tools/packages.txt)"
    result = soak.run(SECONDS)
    print(soak.markdown(result))
    print("written: %s" % soak.save(result))
    kinds = set(f["kind"] for f in result["faults"])
    assert len(kinds) >= 8, sorted(kinds)
    assert result["expired"] == [], result["expired"]
    assert result["needed_a_person"] == [], result["checks"]
    assert all(r["sender_error"] is None for r in result["lines"]), result["lines"]
    assert result["lost_from_syslog"] == 0, result["lines"]
    assert result["lost_between_rsyslogs"] == 0, result["lines"]
    assert all(r["written"] > 0 for r in result["lines"]), result["lines"]
    assert result["renewals"] > result["hosts"], "the fleet hardly renewed: %d renewals" % result["renewals"]
    for fault in result["faults"]:
        if fault.get("harmless"):
            continue
        assert fault.get("seen_by"), ("not seen", fault)
        assert fault.get("cleared"), ("not cleared", fault)
