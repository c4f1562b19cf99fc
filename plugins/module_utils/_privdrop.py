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

import importlib
import json
import os
import pwd
import resource
import sys
import select
import signal
import time

from . import errors
from .errors import MinibusError

try:
    import ctypes
    _LIBC = ctypes.CDLL(None, use_errno=True)
    _LIBC.prctl  # pylint: disable=pointless-statement
except (ImportError, OSError, AttributeError):  # not Linux/glibc: the deadline still bounds the child
    _LIBC = None
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE = 1, 4

# A result is a small dict of strings and numbers; anything larger is a bug, not a result.
_MAX_RESULT_BYTES = 1024 * 1024
# The child's bounds (docs/design.md, "Bounded reads"): an issuance needs ~100 MiB of address space,
# writes files of a few KiB and holds a handful of descriptors.
MAX_ADDRESS_SPACE = 512 * 1024 * 1024
MAX_FILE_SIZE = 1024 * 1024
MAX_OPEN_FILES = 256
# Imported at first use by the standard library, requests and cryptography (time.strptime, requests'
# netrc lookup, cryptography's OpenSSL backend): imported before the fork, since the account may not be
# able to read the files they come from. Measured by diffing sys.modules around a dropped issuance.
_LAZY_MODULES = ("_strptime", "encodings.idna", "encodings.latin_1", "encodings.ascii", "netrc", "shlex",
                 "cryptography.hazmat.backends.openssl", "cryptography.hazmat.bindings.openssl.binding")
# Libraries whose directories the child may still read from (data files such as certifi's CA bundle,
# or a lazy import not measured): the account must be able to enter them.
_LIBRARIES = ("os", "json", "_ssl", "_hashlib", "hvac", "requests", "urllib3", "certifi", "idna",
              "charset_normalizer", "cryptography")
# A status read (fact, --status) touches a few small files; callers doing Vault requests pass their own.
DEFAULT_DEADLINE_SECONDS = 20


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

    Keywords taken here, not passed to func: deadline_seconds (wall clock; past it the child is killed
    with SIGKILL, which also ends a child the account has stopped with SIGSTOP: same uid after the drop,
    so it may), work (what the sentences call the child's job, "the issuance" by default).
    The child sets resource limits before it drops privileges, so the account cannot raise them.

    The callers import every module they need before calling this: the child may not be able to read
    the files Python was started from (Ansible's AnsiballZ payload lives in root's 0700 temp dir). Only
    when an import fails anyway does the child say that the account cannot read the Python.
    """
    deadline_seconds = kwargs.pop("deadline_seconds", None) or DEFAULT_DEADLINE_SECONDS
    work = kwargs.pop("work", None) or "the issuance"
    _import_lazy_modules()
    interpreter_dirs = _interpreter_dirs()
    try:
        account = pwd.getpwuid(uid).pw_name
    except KeyError:
        account = "uid %d" % uid
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_end)
        status = 0
        try:
            try:
                os.chdir("/")
                limit_resources(deadline_seconds)
                drop_to(uid, gid)
                _harden_after_drop()
                reply = {"result": func(*args, **kwargs)}
            except ImportError as exc:  # ModuleNotFoundError too: a module not imported before the fork
                closed = closed_interpreter_dir(interpreter_dirs)
                reply = ({"error": unreadable_interpreter_sentence(account, closed, exc), "type": "MinibusError"}
                         if closed else {"unexpected": type(exc).__name__})
            except MinibusError as exc:
                reply = {"error": exc.message, "type": type(exc).__name__, "status": exc.status,
                         "not_processed": exc.not_processed}
            except MemoryError:
                reply = {"error": "%s running as uid %d ran out of its %d MiB of memory; the certificate files "
                         "are the old set or the new one, never a mix: look for an oversized file in the store."
                         % (work[:1].upper() + work[1:], uid, MAX_ADDRESS_SPACE // (1024 * 1024)),
                         "type": "MinibusError"}
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
    deadline = time.monotonic() + deadline_seconds
    chunks, size, timed_out, wait_status = [], 0, False, None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                timed_out = True
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            size += len(chunk)
            if size > _MAX_RESULT_BYTES:
                chunks = []
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
        wait_status = _reap(pid, deadline, kill_now=timed_out or size > _MAX_RESULT_BYTES)
    try:
        reply = json.loads(b"".join(chunks).decode("utf-8"))
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        if timed_out:
            raise MinibusError("%s running as uid %d did not finish within %d s (killed); the certificate files "
                               "are the old set or the new one, never a mix: look for a stopped process of that "
                               "account or a Vault that does not answer, then run again." % (work[:1].upper() + work[1:], uid, deadline_seconds))
        how = ("was killed by signal %d" % os.WTERMSIG(wait_status) if os.WIFSIGNALED(wait_status)
               else "ended without an answer")
        raise MinibusError("%s running as uid %d %s; the certificate files are the old set or the new "
                           "one, never a mix: run again." % (work[:1].upper() + work[1:], uid, how))
    if "result" in reply:
        return reply["result"]
    if "error" in reply:
        cls = getattr(errors, str(reply.get("type")), MinibusError)
        if not (isinstance(cls, type) and issubclass(cls, MinibusError)):
            cls = MinibusError
        error = cls(reply["error"], reply.get("status"))
        error.not_processed = bool(reply.get("not_processed"))
        raise error
    raise MinibusError("%s running as uid %d failed with an unexpected %s (a bug: please report it); the "
                       "certificate files are the old set or the new one, never a mix."
                       % (work[:1].upper() + work[1:], uid, reply.get("unexpected")))


def _import_lazy_modules():
    for name in _LAZY_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional part (no cryptography: certs reports that itself)
            pass


def _interpreter_dirs():
    """The interpreter's directory and those of the libraries loaded now (stdlib, site-packages)."""
    dirs = [os.path.dirname(os.path.abspath(sys.executable))] if sys.executable else []
    for name in _LIBRARIES:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if path:
            # a package's own directory, and the directory holding it (its sys.path entry)
            here = os.path.dirname(os.path.abspath(path))
            dirs += [os.path.dirname(here), here] if os.path.basename(path) == "__init__.py" else [here]
    seen = []
    for directory in dirs:
        if directory not in seen:
            seen.append(directory)
    return seen


def closed_interpreter_dir(directories):
    """Run as the account: (directory, the first directory on its way closed to it) for the first directory
    Python or a library is read from that the account cannot enter, else None."""
    for directory in directories:
        if os.access(directory, os.R_OK | os.X_OK):
            continue
        closed = directory
        path = "/"
        for part in directory.strip("/").split("/"):
            path = os.path.join(path, part)
            if not os.access(path, os.X_OK):
                closed = path
                break
        return directory, closed
    return None


def unreadable_interpreter_sentence(account, closed, exc):
    """The one sentence for a child that failed to import because the account cannot read the Python.

    Asked only after an import failed: everything the work needs is imported before the fork, so a venv
    below a 0700 directory (root's home, a mktemp -d) works as long as nothing more is imported.
    """
    directory, door = closed
    name = getattr(exc, "name", None) or "a module"
    return ("The renewal account %s cannot read the Python interpreter's directory %s (%s is closed to it), and the "
            "work needed %s from there: install Python and the collection's libraries where it can (the system's "
            "python3 with python3-hvac, or a venv below a directory it can enter), or let it enter %s; the "
            "certificate files are the old set or the new one, never a mix." % (account, directory, door, name, door))


def _reap(pid, deadline, kill_now=False):
    """waitpid for the child, killing it when it is late (a stopped child never exits by itself)."""
    if not kill_now:
        while time.monotonic() < deadline:
            done, wait_status = os.waitpid(pid, os.WNOHANG)
            if done:
                return wait_status
            time.sleep(0.01)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    return os.waitpid(pid, 0)[1]


def limit_resources(cpu_seconds):
    """Bounds for the child, set while still root so the account cannot raise them (soft = hard)."""
    for name, value in (("RLIMIT_AS", MAX_ADDRESS_SPACE), ("RLIMIT_FSIZE", MAX_FILE_SIZE),
                        ("RLIMIT_NOFILE", MAX_OPEN_FILES), ("RLIMIT_CORE", 0),
                        ("RLIMIT_CPU", int(cpu_seconds) + 5)):
        which = getattr(resource, name)
        _soft, hard = resource.getrlimit(which)
        if hard != resource.RLIM_INFINITY:
            value = min(value, hard)
        resource.setrlimit(which, (value, value))


def _harden_after_drop():
    """Not dumpable (the account cannot ptrace the child or read its memory), killed with its parent.

    Both are reset by the kernel at a credential change, hence after the drop. A same-uid SIGSTOP
    remains possible: the parent's deadline bounds it.
    """
    if _LIBC is None:
        return
    _LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
