# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Play the renewal account against root on a role-built host (Molecule, adversarial.yml).

Subcommands (run as root on the host):
  enumerate            what the account can write, found on the live system (find -writable run as
                       the account), and the attack points: every entry of a directory it can write
                       (it can replace each of those by a symlink)
  sweep TOKENS_FILE    for each attack point and each kind of symlink, plant it as the account, run
                       the collection's core (what vault_pki_issue runs) as root with owner set and
                       force, compare the snapshot of everything outside the account's directories,
                       put the original back; TOKENS_FILE holds one wrapped secret id per line
  plant KIND           snapshot, then plant KIND links at every entry of the account's directories
                       (for a role run by the playbook)
  check                compare with the snapshot of `plant`, put the originals back
Every verdict is one JSON object on stdout.
"""

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys

ACCOUNT = "minibus-certs"
LIB = "/usr/local/lib/minibus-certs"
CONFIG = "/etc/minibus-certs/renewer.json"
# Planted links point here: a root-owned 0600 file, a root-owned 0700 directory, and names that
# do not exist inside a root-only directory (dangling).
TARGETS = "/etc/minibus-adversary"
TARGET_FILE = TARGETS + "/root-file"
TARGET_DIR = TARGETS + "/root-dir"
DANGLING_DIR = "/root/minibus-adversary"
RUN_DIR = "/root/minibus-adversary-run"  # the sweep's own bookkeeping, not watched
KINDS = ("file", "dir", "dangling")
# Not enumerated, and why:
#   /proc /sys /dev  kernel interfaces, not files root's tasks write; -xdev skips them anyway
#   /run             tmpfs of runtime state; the collection keeps nothing there
#   /tmp /var/tmp    sticky world-writable: every user can plant there, fs.protected_symlinks stops
#                    root from following another user's links, and nothing of the collection runs
#                    as root there (the renewer has PrivateTmp)
EXCLUDED = ("/proc", "/sys", "/dev", "/run", "/tmp", "/var/tmp")
# Snapshot: everything root owns that a followed link could reach in this test (the targets above
# live in /etc and /root), the collection's code, and the root-owned parts of the state directory.
WATCHED = ("/etc", "/root", "/usr/local", "/var/lib/minibus-certs")
SUFFIX = ".adversary-orig"


def _ids():
    import pwd
    entry = pwd.getpwnam(ACCOUNT)
    return entry.pw_uid, entry.pw_gid


def as_account(func, *args):
    """func(*args) in a child that is the renewal account: the attacker never uses root."""
    uid, gid = _ids()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(uid)
            func(*args)
        except BaseException:  # pylint: disable=broad-except
            code = 1
        os._exit(code)
    _pid, status = os.waitpid(pid, 0)
    return os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def enumerate_points():
    cmd = ["runuser", "-u", ACCOUNT, "--", "find", "/", "-xdev", "("]
    for i, path in enumerate(EXCLUDED):
        cmd += (["-o"] if i else []) + ["-path", path]
    # Symlinks are left out: access(2) follows them (a masked unit -> /dev/null counts as writable),
    # and the account can replace a link only if it can write its directory, whose entries are all
    # attack points anyway.
    cmd += [")", "-prune", "-o", "!", "-type", "l", "-writable", "-print0"]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, check=False).stdout
    writable = sorted(p for p in out.decode("utf-8", "surrogateescape").split("\0") if p)
    points = set()
    for path in writable:
        if os.path.isdir(path) and not os.path.islink(path):
            points.update(os.path.join(path, entry) for entry in os.listdir(path))
    # Deepest first: an attack on a directory would hide the attacks below it.
    points = sorted((p for p in points if SUFFIX not in p), key=lambda p: (-p.count("/"), p))
    return writable, points


_DIGESTS = {}


def _digest(path, st):
    # Any write changes ctime (which no one can set), so an unchanged inode, size and ctime means
    # unchanged content: large files (the bao binary) are hashed once, not twice per attack.
    key = (path, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _DIGESTS:
        _DIGESTS[key] = _hash(path)
    return _DIGESTS[key]


def _hash(path):
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(65536), b""):
            h.update(block)
    return h.hexdigest()


def snapshot(account_dirs):
    snap = {}
    for root in WATCHED:
        for top, dirs, files in os.walk(root):
            dirs[:] = [d for d in dirs if os.path.join(top, d) not in account_dirs
                       and os.path.join(top, d) not in (RUN_DIR, "/root/.ansible", "/root/.cache")]
            for name in [""] + dirs + files:
                path = os.path.join(top, name) if name else top
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                what = [stat.S_IFMT(st.st_mode), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)]
                if stat.S_ISLNK(st.st_mode):
                    what.append(os.readlink(path))
                elif stat.S_ISREG(st.st_mode):
                    what.append(_digest(path, st))
                snap[path] = what
    return snap


def diff(before, after):
    changed = sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))
    return ["%s: %s -> %s" % (p, before.get(p, "absent"), after.get(p, "absent")) for p in changed]


def _target(kind, n):
    return {"file": TARGET_FILE, "dir": TARGET_DIR}.get(kind) or "%s/planted-%d" % (DANGLING_DIR, n)


def _plant(point, target):
    if os.path.lexists(point):
        os.rename(point, point + SUFFIX)
    os.symlink(target, point)


def _restore(point):
    if os.path.lexists(point + SUFFIX):
        if os.path.lexists(point):
            if os.path.isdir(point) and not os.path.islink(point):
                shutil.rmtree(point)
            else:
                os.unlink(point)
        os.rename(point + SUFFIX, point)
    elif os.path.islink(point) and os.readlink(point).startswith((TARGETS, DANGLING_DIR)):
        os.unlink(point)


def _account_dirs():
    with open(CONFIG) as handle:
        config = json.load(handle)
    dirs = {os.path.dirname(config["cert_path"]), os.path.dirname(config["secret_id_store"])}
    if config.get("stamp_path"):
        dirs.add(os.path.dirname(config["stamp_path"]))
    return sorted(dirs)


def run_core_as_root(token):
    """What vault_pki_issue does when run as root with owner set: the collection's own core."""
    sys.path.insert(0, LIB)
    from minibus_pki.errors import MinibusError  # pylint: disable=import-error
    from minibus_pki.issuance import ensure_certificate  # pylint: disable=import-error
    from minibus_pki.options import resolve_env  # pylint: disable=import-error
    from minibus_pki.renewer import load_config  # pylint: disable=import-error
    params = load_config(CONFIG)  # the renewer's config with every option's default, as the module has them
    params.pop("stamp_path", None)
    params.update(owner=ACCOUNT, group=ACCOUNT, force=True, secret_id_wrapping_token=token)
    try:
        result = ensure_certificate(resolve_env(params, {}))
        return "issued" if result.get("issued") else "unchanged"
    except MinibusError as exc:
        return "refused: %s" % exc.message
    except Exception as exc:  # pylint: disable=broad-except
        return "crashed: %s" % type(exc).__name__


def _setup():
    """Make the targets once; never rewrite them (that would hide a change an attack made)."""
    for path, mode in ((TARGETS, 0o755), (TARGET_DIR, 0o700), (DANGLING_DIR, 0o700), (RUN_DIR, 0o700)):
        if not os.path.lexists(path):
            os.mkdir(path, mode)
    for path in (TARGET_FILE, TARGET_DIR + "/inside"):
        if not os.path.lexists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, b"root's own file, must never change\n")
            os.close(fd)


def main(argv):
    _setup()
    account_dirs = _account_dirs()
    if argv[0] == "enumerate":
        writable, points = enumerate_points()
        print(json.dumps({"writable": writable, "points": points, "excluded": EXCLUDED}))
        return 0
    if argv[0] == "sweep":
        with open(argv[1]) as handle:
            tokens = handle.read().split()  # whitespace-separated wrapping tokens
        os.unlink(argv[1])
        _writable, points = enumerate_points()
        attacks, violations, outcomes = 0, [], {}
        for kind in KINDS:
            for point in points:
                if not tokens:
                    violations.append("ran out of wrapped secret ids: mint more")
                    break
                attacks += 1
                before = snapshot(account_dirs)
                planted = as_account(_plant, point, _target(kind, attacks))
                outcome = run_core_as_root(tokens.pop()) if planted else "not planted"
                changed = diff(before, snapshot(account_dirs))
                violations += ["%s link at %s: %s" % (kind, point, c) for c in changed]
                outcomes[outcome.split(":")[0]] = outcomes.get(outcome.split(":")[0], 0) + 1
                as_account(_restore, point)
        # Leave a working store behind: one clean issuance with a fresh secret id.
        final = run_core_as_root(tokens.pop()) if tokens else "no token left"
        print(json.dumps({"attacks": attacks, "points": len(points), "outcomes": outcomes,
                          "violations": violations, "final": final}))
        return 0
    state = os.path.join(RUN_DIR, "plant.json")
    if argv[0] == "plant":
        points = sorted({os.path.join(d, e) for d in account_dirs for e in os.listdir(d)})
        before = snapshot(account_dirs)
        for n, point in enumerate(points):
            as_account(_plant, point, _target(argv[1], 1000 + n))
        with open(state, "w") as handle:
            json.dump({"before": before, "points": points, "kind": argv[1]}, handle)
        print(json.dumps({"planted": len(points), "kind": argv[1]}))
        return 0
    if argv[0] == "check":
        with open(state) as handle:
            saved = json.load(handle)
        os.unlink(state)
        changed = diff({k: list(v) for k, v in saved["before"].items()}, snapshot(account_dirs))
        for point in saved["points"]:
            as_account(_restore, point)
        print(json.dumps({"attacks": len(saved["points"]), "kind": saved["kind"],
                          "violations": ["%s link: %s" % (saved["kind"], c) for c in changed]}))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
