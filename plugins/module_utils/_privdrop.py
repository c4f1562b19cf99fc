# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""Run one function as the store's owner, in a child process, when we are root.

Root must never follow, open, chown or remove a path the renewal account can change. Rather than
making every file operation symlink-proof, root forks a child that becomes the account for good
(supplementary groups, gid, uid, in that order) and does all of the work in the store there; the
parent only relays the child's JSON result, or its one-sentence error. See docs/design.md.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from . import errors
from .errors import MinibusError

# A result is a small dict of strings and numbers; anything larger is a bug, not a result.
_MAX_RESULT_BYTES = 1024 * 1024


def needs_drop(uid):
    """True when we are root and the work belongs to another account."""
    return os.geteuid() == 0 and uid not in (None, -1, 0)


def drop_to(uid, gid):
    """Become uid/gid for the rest of this process, and prove root cannot come back."""
    os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    try:
        os.setuid(0)
    except OSError:
        pass
    else:  # pragma: no cover - the kernel would have to be broken
        raise MinibusError("Dropping privileges to uid %d failed: root could be regained; nothing was done." % uid)
    if os.geteuid() != uid or os.getegid() != gid or os.getgroups() not in ([gid], []):
        raise MinibusError("Dropping privileges to uid %d/gid %d did not take effect; nothing was done." % (uid, gid))


def run_as(uid, gid, func, *args, **kwargs):
    """func(*args, **kwargs) as uid/gid in a forked child; its JSON-able return value, or its MinibusError.

    The callers import every module they need before calling this: the child may not be able to read
    the files Python was started from (Ansible's AnsiballZ payload lives in root's 0700 temp dir).
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        status = 0
        try:
            try:
                os.chdir("/")
                drop_to(uid, gid)
                reply = {"result": func(*args, **kwargs)}
            except MinibusError as exc:
                reply = {"error": exc.message, "type": type(exc).__name__, "status": exc.status,
                         "not_processed": exc.not_processed}
            except BaseException as exc:  # pylint: disable=broad-except
                reply = {"unexpected": type(exc).__name__}
            data = json.dumps(reply).encode("utf-8")
            view = memoryview(data)
            while view:
                view = view[os.write(write_end, view):]
        except BaseException:  # pylint: disable=broad-except
            status = 1
        finally:
            os._exit(status)  # no atexit handlers, no flush of the parent's buffers
    os.close(write_end)
    chunks, size = [], 0
    try:
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            size += len(chunk)
            if size > _MAX_RESULT_BYTES:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _pid, wait_status = os.waitpid(pid, 0)
    try:
        reply = json.loads(b"".join(chunks).decode("utf-8"))
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        how = ("was killed by signal %d" % os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status)
               else "ended without an answer")
        raise MinibusError("The issuance running as uid %d %s; the certificate files are the old set or the new "
                           "one, never a mix: run again." % (uid, how))
    if "result" in reply:
        return reply["result"]
    if "error" in reply:
        cls = getattr(errors, str(reply.get("type")), MinibusError)
        if not (isinstance(cls, type) and issubclass(cls, MinibusError)):
            cls = MinibusError
        error = cls(reply["error"], reply.get("status"))
        error.not_processed = bool(reply.get("not_processed"))
        raise error
    raise MinibusError("The issuance running as uid %d failed with an unexpected %s (a bug: please report it); the "
                       "certificate files are the old set or the new one, never a mix."
                       % (uid, reply.get("unexpected")))
