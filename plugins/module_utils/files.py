# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""Files that belong together change together.

Every issuance is written, complete and fsynced, into a fresh version directory; one symlink,
``current``, is then replaced with rename(2). The public paths (cert_path, key_path, chain_path,
ca_path) are symlinks through ``current``, so a single atomic rename moves all of them at once: no
reader can resolve a new certificate next to an old key. See docs/design.md.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import contextlib
import errno
import fcntl
import os
import shutil
import stat
import time

from .errors import MinibusError

STORE_DIR = ".minibus"
_VERSION_PREFIX = "v-"

# kind of a file in the store -> file name inside a version directory
FILE_NAMES = {"cert": "cert.pem", "key": "key.pem", "chain": "chain.pem", "ca": "ca.pem", "fullchain": "fullchain.pem"}


def lstat_or_none(path, outcome="nothing was requested from Vault"):
    """os.lstat(path), None when nothing is there; else one sentence ending in outcome (what was not done)."""
    try:
        return os.lstat(path)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        raise MinibusError("Could not inspect %s (%s): run as a user that can; %s."
                           % (path, os.strerror(exc.errno), outcome))


def _foreign_link(path):
    return MinibusError("%s is a symbolic link the module did not make: remove it (and find out who planted it); "
                        "nothing was requested from Vault." % path)


# Caps for what the module reads back from disk (docs/design.md, "Bounded reads"): far above any real
# file of its kind, far below what could hurt the reader.
MAX_PEM_BYTES = 64 * 1024
MAX_JSON_BYTES = 64 * 1024
# A CA bundle (ca_cert, trust_anchor_path) may be a whole system bundle (Debian's: about 200 KiB).
MAX_CA_BUNDLE_BYTES = 4 * 1024 * 1024

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# What the sentences call each kind of file.
_WHAT = {"cert": "certificate", "key": "private key", "chain": "CA chain", "ca": "CA certificate",
         "fullchain": "full chain"}


def read_bounded(path, max_bytes, what, missing_ok=False, dir_fd=None, shown=None, check=None):
    """The bytes of the regular file at path, at most max_bytes; one sentence for anything else.

    Opened with O_NOFOLLOW (a symlink at path is refused, never followed), O_NONBLOCK (a FIFO cannot
    make the open wait for a writer) and O_CLOEXEC; fstat must say regular file (no FIFO, device or
    directory), and no more than max_bytes + 1 bytes are ever read. what names the file in the sentence
    ("certificate", "renewer state file"). missing_ok: None instead of an error when nothing is there.
    dir_fd: path is relative to this open directory (the store's walk, CertStore.read); shown: the path
    named in sentences then. check: called with the open file's fstat before any byte is read (raises to
    refuse the file, for instance one root must not trust).
    """
    shown = shown or path
    try:
        fd = os.open(path, _READ_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR) and missing_ok:
            return None
        if exc.errno == errno.ELOOP:
            raise MinibusError("The %s %s is a symbolic link the module did not make: remove it (and find out who "
                               "planted it); nothing was read from it." % (what, shown))
        raise MinibusError("Could not read the %s %s (%s): run as a user that can read it."
                           % (what, shown, os.strerror(exc.errno)))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MinibusError("The %s %s is not a regular file (a FIFO, device or directory): remove it (and find "
                               "out who put it there); nothing was read from it." % (what, shown))
        if st.st_size > max_bytes:
            raise _too_large(what, shown, max_bytes)
        if check is not None:
            check(st)
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, min(65536, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:  # grew while we read
            raise _too_large(what, shown, max_bytes)
        return b"".join(chunks)
    except OSError as exc:
        raise MinibusError("Could not read the %s %s (%s): run as a user that can read it."
                           % (what, shown, os.strerror(exc.errno)))
    finally:
        os.close(fd)


def foreign_directory(path):
    """The first directory above path that is not root's alone, as (directory, owner uid); None if all are.

    Not root's alone: owned by another account, or writable by group or others without the sticky bit
    (/tmp, sticky, only lets each account replace its own entries). Links in path are resolved first, so
    the directories checked are the ones the path really goes through.
    """
    directory = os.path.realpath(os.path.dirname(os.path.abspath(path)))
    while True:
        try:
            st = os.lstat(directory)
        except OSError:
            st = None
        if st is not None and (st.st_uid != 0 or (st.st_mode & 0o022 and not st.st_mode & 0o1000)):
            return directory, st.st_uid
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def read_ca_bundle(path, option):
    """The bytes of the CA bundle file an option names (ca_cert, trust_anchor_path), bounded like every read.

    Links are resolved first (/etc/ssl/certs holds links), then the file itself goes through
    read_bounded: a FIFO, a device such as /dev/zero, a directory or an oversized file is one sentence
    naming the option and the file, never a hang. None when nothing is at path.
    """
    return read_bounded(os.path.realpath(path), MAX_CA_BUNDLE_BYTES, "%s file" % option, missing_ok=True, shown=path)


def _too_large(what, path, max_bytes):
    return MinibusError("The %s %s is larger than %d KiB, more than any real one: remove it (and find out who put "
                        "it there); nothing was read from it." % (what, path, max_bytes // 1024))


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # a FIFO in its place fails, never waits
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unique(prefix):
    return "%s%d-%s" % (prefix, os.getpid(), os.urandom(4).hex())


def write_file_atomic(path, content, mode=0o600, uid=-1, gid=-1):
    """Write content to path through a temp file in the same directory and rename(2).

    The temp file is created with its final mode (O_EXCL), so a secret is never readable by others,
    not even for a moment.
    """
    directory = os.path.dirname(path) or "."
    prefix = ".tmp-" + os.path.basename(path) + "-"
    # A run killed between create and rename leaves its temp file (for the secret id store: a live
    # secret id). Writers of one path are serialised by exclusive_lock, so any such file is stale.
    try:
        for entry in os.listdir(directory):
            if entry.startswith(prefix):
                _remove_quietly(os.path.join(directory, entry))
    except OSError:
        pass
    tmp = os.path.join(directory, _unique(prefix))
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)
            if uid != -1 or gid != -1:
                os.fchown(fd, uid, gid)
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
        _fsync_dir(directory)
    except OSError as exc:
        _remove_quietly(tmp)
        raise _not_writable(path, exc)


def _remove_quietly(path):
    """Remove a file, a symlink (never its target) or a directory tree (without following links)."""
    try:
        if stat.S_ISDIR(os.lstat(path).st_mode):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except OSError:
        pass


def _not_writable(path, exc):
    return MinibusError("Could not write %s (%s): check that the directory exists and is writable by the user "
                        "running this." % (path, os.strerror(exc.errno) if exc.errno else exc))


class CertStore:
    """The versioned directory behind cert_path, key_path, chain_path and ca_path."""

    def __init__(self, cert_path, key_path, chain_path=None, ca_path=None, fullchain_path=None):
        self.paths = {"cert": cert_path, "key": key_path}
        if chain_path:
            self.paths["chain"] = chain_path
        if ca_path:
            self.paths["ca"] = ca_path
        if fullchain_path:
            self.paths["fullchain"] = fullchain_path
        self.base = os.path.join(os.path.dirname(os.path.abspath(cert_path)), STORE_DIR,
                                 os.path.basename(cert_path))
        self.current = os.path.join(self.base, "current")

    def check_entries(self, owner_uid=None):
        """Refuse a store holding what the module never makes, before anything is read or written.

        The module makes ``.minibus`` and ``.minibus/<name>`` as directories, the version directories
        inside, and one symlink, ``current``, naming a version; anything else there (a symlink to
        elsewhere above all) was planted. owner_uid: root working without owner requires every existing
        store directory to be root's, since an account owning one could swap its entries at any time.
        """
        store_dir = os.path.dirname(self.base)
        cert_dir = os.path.dirname(store_dir)
        for path in (store_dir, self.base):
            st = lstat_or_none(path)
            if st is None:
                continue
            if stat.S_ISLNK(st.st_mode):
                raise _foreign_link(path)
            if not stat.S_ISDIR(st.st_mode):
                raise MinibusError("%s is not a directory the module made: remove it; nothing was requested from "
                                   "Vault." % path)
        st = lstat_or_none(self.current)
        if st is not None:
            target = os.readlink(self.current) if stat.S_ISLNK(st.st_mode) else ""
            if not target.startswith(_VERSION_PREFIX) or "/" in target:
                raise _foreign_link(self.current) if target else MinibusError(
                    "%s is not the symbolic link the module makes: remove it; nothing was requested from Vault."
                    % self.current)
            version = lstat_or_none(os.path.join(self.base, target))
            if version is not None and stat.S_ISLNK(version.st_mode):
                raise _foreign_link(os.path.join(self.base, target))
        if owner_uid is None:
            return
        for path in (cert_dir, store_dir, self.base):
            st = lstat_or_none(path)
            if st is None:
                continue
            followed = os.stat(path)
            if st.st_uid != owner_uid or followed.st_uid != owner_uid:
                other = followed.st_uid if followed.st_uid != owner_uid else st.st_uid
                raise MinibusError("%s belongs to uid %d, and root does not work in a directory another account can "
                                   "change: set owner (and group) to that account so the module works as it; "
                                   "nothing was requested from Vault." % (path, other))

    def read(self):
        """The content (bytes) now visible at each public path, or None where there is none.

        Never follows a link it did not make: a public path that is the store's own link is read by walking
        the store (each directory opened with O_NOFOLLOW, ``current`` checked as check_entries does), a
        regular file is read as it is (a store not yet migrated); each file through read_bounded.
        """
        content = {}
        for kind, path in self.paths.items():
            st = lstat_or_none(path)
            if st is None:
                content[kind] = None
            elif stat.S_ISLNK(st.st_mode):
                if _readlink_or_none(path) != self._link_target(kind):
                    raise MinibusError("The %s %s is a symbolic link the module did not make: remove it (and find "
                                       "out who planted it); nothing was read from it." % (_WHAT[kind], path))
                content[kind] = self._read_current(kind)
            else:
                content[kind] = read_bounded(path, MAX_PEM_BYTES, _WHAT[kind], missing_ok=True)
        return content

    def _read_current(self, kind):
        """The file of that kind in the version ``current`` names, opened only through directories the store made."""
        store_dir = os.path.dirname(self.base)
        fds = []
        try:
            try:
                fds.append(os.open(os.path.dirname(store_dir), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
                for name in (STORE_DIR, os.path.basename(self.base)):
                    fds.append(os.open(name, _DIR_FLAGS, dir_fd=fds[-1]))
                target = os.readlink("current", dir_fd=fds[-1])
                if not target.startswith(_VERSION_PREFIX) or "/" in target:
                    raise _foreign_link(self.current)
                fds.append(os.open(target, _DIR_FLAGS, dir_fd=fds[-1]))
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EINVAL):
                    raise MinibusError("The certificate store %s holds a file or link the module did not make: "
                                       "remove it (and find out who planted it); nothing was read from it."
                                       % self.base)
                raise MinibusError("Could not read the certificate store %s (%s): run as a user that can read it."
                                   % (self.base, os.strerror(exc.errno)))
            return read_bounded(FILE_NAMES[kind], MAX_PEM_BYTES, _WHAT[kind], missing_ok=True, dir_fd=fds[-1],
                                shown=os.path.join(self.base, target, FILE_NAMES[kind]))
        finally:
            for fd in fds:
                os.close(fd)

    def check_writable(self):
        """Fail before any Vault request if the files could not be written afterwards."""
        for path in [self.base] + list(self.paths.values()):
            directory = _existing_ancestor(os.path.dirname(os.path.abspath(path)))
            if not os.path.isdir(directory):
                raise MinibusError("Cannot create files below %s: it is not a directory; choose other paths; "
                                   "nothing was requested from Vault." % directory)
            if not os.access(directory, os.W_OK | os.X_OK):
                raise MinibusError("Cannot write below %s (permission denied): run as a user that can, or choose "
                                   "other paths; nothing was requested from Vault." % directory)
        for path in self.paths.values():
            if os.path.isdir(path) and not os.path.islink(path):
                raise MinibusError("%s is a directory: give a file path; nothing was requested from Vault." % path)

    def install(self, files, serial, key_mode=0o600, public_mode=0o644, uid=-1, gid=-1):
        """Write one issuance (dict kind -> PEM text) as a new version and make it current atomically."""
        # Encoded before anything exists on disk: a bad answer must leave no staging debris.
        try:
            data = dict((kind, files[kind].encode("ascii")) for kind in self.paths)
        except (KeyError, UnicodeError, AttributeError):
            raise MinibusError("The files to install are incomplete or not ASCII PEM text; nothing was written.")
        self.check_entries()
        self._makedirs(self.base, uid, gid, no_links=(os.path.dirname(self.base), self.base))
        version = "%s%s-%s" % (_VERSION_PREFIX, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                               serial.replace(":", ""))
        staging = os.path.join(self.base, _unique(".staging-"))
        final = os.path.join(self.base, version)
        created = False
        try:
            os.mkdir(staging, 0o755)
            created = True
            if uid != -1 or gid != -1:
                os.chown(staging, uid, gid)
            for kind, path in self.paths.items():
                target = os.path.join(staging, FILE_NAMES[kind])
                mode = key_mode if kind == "key" else public_mode
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
                try:
                    os.fchmod(fd, mode)
                    if uid != -1 or gid != -1:
                        os.fchown(fd, uid, gid)
                    os.write(fd, data[kind])
                    os.fsync(fd)
                finally:
                    os.close(fd)
            _fsync_dir(staging)
            if os.path.exists(final):
                final = os.path.join(self.base, _unique(version + "-"))
            os.rename(staging, final)
            created = False
            previous = _readlink_or_none(self.current)
            self._swap_symlink(self.current, os.path.basename(final))
        except OSError as exc:
            if created:
                _remove_quietly(staging)
            raise _not_writable(self.base, exc)
        except BaseException:
            if created:
                _remove_quietly(staging)
            raise
        self._link_public_paths()
        self._prune(keep=(os.path.basename(final), previous))
        return final

    @staticmethod
    def _makedirs(path, uid, gid, no_links=()):
        """mkdir -p; the directories in no_links (the store's own) must not be symlinks."""
        for own in no_links:
            st = lstat_or_none(own)
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise _foreign_link(own)
        missing = []
        while path and not os.path.isdir(path):
            missing.append(path)
            path = os.path.dirname(path)
        for directory in reversed(missing):
            try:
                os.mkdir(directory, 0o755)
                if uid != -1 or gid != -1:
                    os.chown(directory, uid, gid)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise _not_writable(directory, exc)

    @staticmethod
    def _swap_symlink(link, target):
        tmp = os.path.join(os.path.dirname(link), _unique(".link-"))
        os.symlink(target, tmp)
        try:
            os.rename(tmp, link)
        except OSError:
            _remove_quietly(tmp)
            raise
        _fsync_dir(os.path.dirname(link))

    def _link_target(self, kind):
        """Relative when the public path sits next to the store, absolute otherwise."""
        path = os.path.abspath(self.paths[kind])
        inside = os.path.join(self.current, FILE_NAMES[kind])
        if os.path.dirname(path) == os.path.dirname(os.path.dirname(self.base)):
            return os.path.relpath(inside, os.path.dirname(path))
        return inside

    def _link_public_paths(self):
        # The key is linked first: while a pre-existing regular-file set is migrated, a reader may
        # briefly see the new key with the old certificate, never a new certificate with an old key.
        for kind in sorted(self.paths, key=lambda r: 0 if r == "key" else 1):
            path = os.path.abspath(self.paths[kind])
            target = self._link_target(kind)
            if os.path.islink(path) and os.readlink(path) == target:
                continue
            try:
                self._makedirs(os.path.dirname(path), -1, -1)
                self._swap_symlink(path, target)
            except OSError as exc:
                raise _not_writable(path, exc)

    def _prune(self, keep):
        """Remove every version but the new current and the one it replaced (a reader may hold it open)."""
        try:
            entries = os.listdir(self.base)
        except OSError:
            return
        stale = [e for e in entries if e.startswith(_VERSION_PREFIX) and e not in keep]
        # Leftovers of a run killed mid-way: staging dirs and temp links.
        stale += [e for e in entries if e.startswith(".staging-") or e.startswith(".link-")]
        for entry in stale:
            _remove_quietly(os.path.join(self.base, entry))

    def links_in_place(self):
        """True when every public path is already the store's symlink (no migration pending)."""
        return all(os.path.islink(p) and os.readlink(p) == self._link_target(r) for r, p in self.paths.items())


def _readlink_or_none(path):
    try:
        return os.readlink(path)
    except OSError:
        return None


def _existing_ancestor(path):
    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path or "."


@contextlib.contextmanager
def exclusive_lock(path, uid=-1, gid=-1, wait_seconds=60):
    """Serialise issuances for one store (an Ansible run and the renewer timer may overlap).

    The lock file is opened with O_NOFOLLOW and never chowned: a symlink planted in its place fails
    the open instead of handing its target to whoever planted it. uid/gid only own a new .minibus.
    """
    directory = os.path.dirname(path)
    CertStore._makedirs(directory, uid, gid, no_links=(directory,))
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _foreign_link(path)
        raise _not_writable(path, exc)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MinibusError("%s is not the lock file the module makes: remove it; nothing was requested from "
                               "Vault." % path)
        deadline = time.time() + wait_seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except (IOError, OSError):
                if time.time() > deadline:
                    raise MinibusError("Another issuance holds %s for more than %ds: wait for it to finish, "
                                       "then run again." % (path, wait_seconds))
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)
