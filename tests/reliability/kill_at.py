# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Run the on-host renewer (``--force``) and SIGKILL it at the Nth line executed in the core.

    kill_at.py N CONFIG [REPORT]

A test-only harness: sys.settrace counts 'line' events inside files of
``ansible_collections/minibus/pki/plugins/module_utils`` (nothing else is counted) and, at the Nth,
appends one JSON line to REPORT ({"n", "file", "line", "stack"}: the stack is the chain of core
functions, outermost first) and sends SIGKILL to its own process. N = 0 is the dry count: nothing
is killed, every event is written to REPORT (one JSON line each) and the renewer's exit code is
returned. The production code has no hook for this.

The collections dir holding ansible_collections/minibus/pki comes from
$MINIBUS_RELIABILITY_COLLECTIONS.
"""

import json
import os
import signal
import sys


def main():
    kill_at = int(sys.argv[1])
    config = sys.argv[2]
    report = sys.argv[3] if len(sys.argv) > 3 else os.devnull
    collections = os.environ["MINIBUS_RELIABILITY_COLLECTIONS"]
    sys.path.insert(0, collections)
    core = os.path.realpath(os.path.join(collections, "ansible_collections", "minibus", "pki", "plugins",
                                         "module_utils")) + os.sep
    in_core = {}
    state = {"n": 0}
    out = open(report, "a")

    def is_core(code):
        hit = in_core.get(code)
        if hit is None:
            hit = in_core[code] = os.path.realpath(code.co_filename).startswith(core)
        return hit

    def stack_of(frame):
        names = []
        while frame is not None:
            if is_core(frame.f_code):
                names.append("%s.%s" % (os.path.basename(frame.f_code.co_filename)[:-3], frame.f_code.co_name))
            frame = frame.f_back
        return ">".join(reversed(names))

    def local_trace(frame, event, arg):
        if event == "line":
            state["n"] += 1
            n = state["n"]
            if kill_at == 0 or n == kill_at:
                out.write(json.dumps({"n": n, "file": os.path.basename(frame.f_code.co_filename),
                                      "line": frame.f_lineno, "stack": stack_of(frame)}) + "\n")
                if n == kill_at:
                    out.flush()
                    os.fsync(out.fileno())
                    os.kill(os.getpid(), signal.SIGKILL)
        return local_trace

    def global_trace(frame, event, arg):
        if is_core(frame.f_code):
            return local_trace
        return None

    from ansible_collections.minibus.pki.plugins.module_utils.renewer import main as renewer_main

    sys.settrace(global_trace)
    try:
        rc = renewer_main(["--config", config, "--force"])
    finally:
        sys.settrace(None)
        out.close()
    sys.stderr.write("kill_at: %d core line events\n" % state["n"])
    return rc


if __name__ == "__main__":
    sys.exit(main())
