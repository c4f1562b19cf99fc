# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Install the core library (these files) on a host as one package, in one step.

The renewer, its root-run publish step and the local fact import the package from a directory
only root can write. One call compares every file and writes only what differs, so a re-run costs
one module run instead of one per file. Plain Python, no Ansible imports.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

from . import files
from .errors import MinibusError

# A core file is a few dozen KiB; anything far larger in its place is not ours.
MAX_CORE_FILE_BYTES = 1024 * 1024
FILE_MODE = 0o644
DIRECTORY_MODE = 0o755
PACKAGE_MARKER = "__init__.py"


def core_sources(modules):
    """{file name: bytes} of the given core modules, read through their own loaders (a zip or files)."""
    sources = {}
    for module in modules:
        name = module.__name__.rsplit(".", 1)[-1] + ".py"
        sources[name] = module.__loader__.get_data(module.__file__)
    sources[PACKAGE_MARKER] = b""
    return sources


def install(path, sources, check_mode=False):
    """Make path hold exactly sources (root's, mode 0644) and no other .py file: {changed, written, removed}.

    Refused, with nothing changed, when path or a directory above it is not root's alone (another
    account could swap entries), or path is not a real directory.
    """
    _check_names(sources)
    missing = _missing_directories(path)
    written, removed = [], []
    if missing:
        written = sorted(sources)
    else:
        written = sorted(name for name, data in sources.items() if not _in_place(os.path.join(path, name), data))
        removed = sorted(name for name in os.listdir(path)
                         if name.endswith(".py") and name not in sources and not _is_directory(os.path.join(path, name)))
    result = {"changed": bool(missing or written or removed), "written": written, "removed": removed}
    if check_mode or not result["changed"]:
        return result
    for directory in missing:
        _mkdir(directory)
    for name in written:
        files.write_file_atomic(os.path.join(path, name), sources[name], mode=FILE_MODE, uid=0, gid=0)
    for name in removed:
        _unlink(os.path.join(path, name))
    return result


def _check_names(sources):
    for name in sources:
        if os.path.basename(name) != name or not name.endswith(".py") or name.startswith("."):
            raise MinibusError("The core file name %r is not a plain .py file name; nothing was installed." % name)


def _missing_directories(path):
    """The directories to create, top first, after checking that every existing one is root's alone."""
    if not os.path.isabs(path):
        raise MinibusError("The core library path %s is not absolute; give an absolute path. Nothing was installed."
                           % path)
    missing = []
    directory = os.path.normpath(path)
    st = files.lstat_or_none(directory, "nothing was installed")
    while st is None:
        missing.insert(0, directory)
        directory = os.path.dirname(directory)
        st = files.lstat_or_none(directory, "nothing was installed")
    if not stat.S_ISDIR(st.st_mode):
        raise MinibusError("%s is not a directory (a link or a file is in its place); remove it or choose another "
                           "path. Nothing was installed." % directory)
    foreign = files.foreign_directory(os.path.join(directory, "x"))
    if foreign is not None or st.st_uid != 0 or st.st_mode & 0o022:
        raise MinibusError("%s must be a directory that only root can write, and so must every directory above it "
                           "(%s is not); fix the owner or mode. Nothing was installed."
                           % (directory, foreign[0] if foreign else directory))
    return missing


def _in_place(path, data):
    """True when path is root's regular file of mode 0644 holding exactly data."""
    st = files.lstat_or_none(path, "nothing was installed")
    if st is None or not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_gid != 0:
        return False
    if stat.S_IMODE(st.st_mode) != FILE_MODE or st.st_size != len(data):
        return False
    return files.read_bounded(path, MAX_CORE_FILE_BYTES, "core file") == data


def _mkdir(directory):
    # Safe as root without O_NOFOLLOW tricks: _missing_directories found every existing directory above
    # this one root's alone, so no other account can create, rename or link a name there between that
    # check and this mkdir, and each new directory is root's with mode 0755 from its creation.
    try:
        os.mkdir(directory, DIRECTORY_MODE)
        os.chmod(directory, DIRECTORY_MODE)  # not narrowed by the umask
    except OSError as exc:
        raise MinibusError("Could not create %s (%s); nothing else was installed." % (directory, os.strerror(exc.errno)))


def _is_directory(path):
    st = files.lstat_or_none(path, "nothing was installed")
    return st is not None and stat.S_ISDIR(st.st_mode)


def _unlink(path):
    try:
        os.unlink(path)  # a link or file of that name goes, never what a link points to
    except OSError as exc:
        raise MinibusError("Could not remove %s (%s); remove it by hand." % (path, os.strerror(exc.errno)))
