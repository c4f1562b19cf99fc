# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""Root's side of the renewal account's output: checked, root-owned copies for rsyslog and node_exporter.

``minibus-certs-renew --publish`` runs as root after every renewer run and after the role's own issuance.
The account's certificate, key, chain, state file and secret id summary are read by a bounded child that
has become the account (_privdrop.run_as, files.read_bounded: no link, no FIFO, capped, a deadline); root
checks them (PEM, key matches, names, valid now, the side's extended key usage, valid path to the pinned trust
anchor) and only then installs canonical copies in its own versioned store (files.CertStore in the
publish directory: one symlink swap). The metrics are rendered by root from the checked record. An
unchanged set writes nothing and restarts nothing. See docs/design.md.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import errno
import grp
import os
import pwd
import stat
import subprocess
import time

from . import _privdrop, certs, files, health, issuance, secret_store
from .errors import InvalidInput, MinibusError

# The published store's public paths (rsyslog names published/fullchain.pem and published/key.pem).
PUBLISHED_FILES = {"cert": "cert.pem", "key": "key.pem", "chain": "chain.pem", "fullchain": "fullchain.pem"}
# With tcp (gtls keeps its session and certificate) a changed set restarts rsyslog, at most this often.
RESTART_INTERVAL_SECONDS = 600
RESTART_STAMP = ".rsyslog-restarted"
RESTART_COMMAND = ("systemctl", "try-restart", "rsyslog.service")
_READ_DEADLINE_SECONDS = 20
_WHAT = {"cert": "certificate", "key": "private key", "chain": "CA chain", "fullchain": "full chain"}


class PublishRefused(MinibusError):
    """The account's files failed a check: nothing was published, the previous set stays."""


def _fragment(sentence):
    """Another part's sentence as the reason inside the refusal's one sentence."""
    text = sentence.rstrip(".").replace("; nothing was read from it", "").replace("; nothing was published", "")
    return text[:1].lower() + text[1:]


def _refusal(reason):
    return PublishRefused("Publishing refused: %s; the published set is unchanged (rsyslog keeps the previous "
                          "certificate)." % reason)


def settings(params):
    """The renewer config's ``publish`` section, checked: dir, key_usage, metrics_path, restart_rsyslog, owner, group."""
    section = params.get("publish")
    if not isinstance(section, dict):
        raise InvalidInput("The renewer config has no publish section (dir, key_usage): run the minibus_certs role "
                           "again; nothing was published.")
    unknown = sorted(set(section) - {"dir", "key_usage", "metrics_path", "restart_rsyslog", "owner", "group"})
    if unknown:
        raise InvalidInput("The renewer config's publish section has unknown keys %s: fix the file (the role writes "
                           "it); nothing was published." % ", ".join(unknown))
    if not isinstance(section.get("dir"), str) or not os.path.isabs(section["dir"]):
        raise InvalidInput("publish.dir must be an absolute path (root's directory for rsyslog's copies); nothing "
                           "was published.")
    if section.get("key_usage") not in certs.KEY_USAGES:
        raise InvalidInput("publish.key_usage must be serverAuth (log server) or clientAuth (client); nothing was "
                           "published.")
    metrics = section.get("metrics_path")
    if metrics is not None and (not isinstance(metrics, str) or not os.path.isabs(metrics)):
        raise InvalidInput("publish.metrics_path must be an absolute path or absent; nothing was published.")
    return dict(section, restart_rsyslog=section.get("restart_rsyslog") is True)


def published_store(directory):
    """The root-owned store rsyslog reads (cert.pem, key.pem, chain.pem, fullchain.pem in directory)."""
    paths = dict((kind, os.path.join(directory, name)) for kind, name in PUBLISHED_FILES.items())
    return files.CertStore(paths["cert"], paths["key"], paths["chain"], fullchain_path=paths["fullchain"])


def publish(params, now=None, restart=None):
    """Check the account's files and publish root-owned copies. Returns a small dict (changed, serial, ...).

    Raises PublishRefused (one sentence) when the account's files fail a check: then nothing of the set
    is written, and the metrics say so (status 2, from the published copy). restart: the rsyslog restart
    (tests give their own); RESTART_COMMAND by default.
    """
    now = now or datetime.datetime.now(datetime.timezone.utc)
    conf = settings(params)
    if os.geteuid() != 0:
        raise MinibusError("--publish runs as root (rsyslog's copies are root's): run it as root; nothing was "
                           "published.")
    p = issuance.prepare(dict(params, owner=None, group=None), check_mode=True)
    old_umask = os.umask(0o022)
    try:
        _root_directory(os.path.dirname(conf["dir"].rstrip("/")), "the parent of publish.dir")
        _root_directory(conf["dir"], "publish.dir", create=True)
        store = published_store(conf["dir"])
        result = {"changed": False, "restarted": False, "restart_pending": False, "metrics_written": False,
                  "warnings": []}
        try:
            seen = _read_accounts_output(p, conf)
            files_to_publish, cert = _checked_set(seen, p, conf, now)
        except MinibusError as exc:
            refusal = exc if isinstance(exc, PublishRefused) else _refusal(_fragment(exc.message))
            _metrics(conf, p, _refused_record(store, p, refusal.message, now), result)
            raise refusal
        described = certs.describe(cert, now)
        result.update(serial=described["serial"], not_after=described["not_after"])
        current = store.read()
        if current != dict((kind, text.encode("ascii")) for kind, text in files_to_publish.items()) \
                or not store.links_in_place():
            store.install(files_to_publish, described["serial"], key_mode=0o600, public_mode=0o644, uid=0, gid=0)
            result["changed"] = True
        _metrics(conf, p, _record(seen, p, files_to_publish, now), result)
        if conf["restart_rsyslog"]:
            _restart_when_due(store, conf["dir"], restart or _try_restart_rsyslog, result)
        return result
    finally:
        os.umask(old_umask)


# --- reading, as the account -----------------------------------------------------------------------

def _account_ids(conf):
    owner, group = conf.get("owner"), conf.get("group")
    if owner in (None, ""):
        return None
    try:
        entry = pwd.getpwnam(owner) if not str(owner).isdigit() else pwd.getpwuid(int(owner))
        gid = entry.pw_gid
        if group not in (None, ""):
            gid = grp.getgrnam(group).gr_gid if not str(group).isdigit() else int(group)
    except KeyError:
        raise InvalidInput("publish.owner %s or publish.group %s has no account on this host: run the minibus_certs "
                           "role again; nothing was published." % (owner, group))
    return entry.pw_uid, gid


def _read_accounts_output(p, conf):
    """The account's files as text, read as the account in a bounded child (root's own store: here)."""
    paths = dict((kind, p[name]) for kind, name in (("cert", "cert_path"), ("key", "key_path"),
                                                    ("chain", "chain_path"), ("fullchain", "fullchain_path"))
                 if p.get(name))
    state_path, _metrics_path = health.default_paths(p)
    ids = _account_ids(conf)
    anchor = p.get("trust_anchor_path")
    # The trust anchor is read by root, bounded, unless the account owns the file or a directory on its way.
    by_account = anchor if anchor and ids is not None and _owned_on_the_way(anchor, ids[0]) else None
    args = (paths, state_path, p.get("secret_id_store"), by_account)
    if ids is not None and _privdrop.needs_drop(ids[0]):
        return _privdrop.run_as(ids[0], ids[1], _read_as_account, *args, deadline_seconds=_READ_DEADLINE_SECONDS,
                                work="the read of the renewal account's files")
    st = _lstat(os.path.dirname(os.path.abspath(paths["cert"])))
    if st is not None and st.st_uid != 0:
        raise InvalidInput("The certificate directory %s belongs to uid %d: set publish.owner to that account so that "
                           "root reads it as the account; nothing was published."
                           % (os.path.dirname(paths["cert"]), st.st_uid))
    return _read_as_account(*args)


def _owned_on_the_way(path, uid):
    """True when uid owns path, the file a link there leads to, or a directory on either way: then only uid
    reads it (root would follow what the account chose)."""
    for target in (os.path.abspath(path), os.path.realpath(path)):
        while True:
            st = _lstat(target)
            if st is not None and st.st_uid == uid:
                return True
            parent = os.path.dirname(target)
            if parent == target:
                break
            target = parent
    return False


def _read_as_account(paths, state_path, secret_id_store, trust_anchor_path=None):
    """Runs as the account: every file through files.read_bounded (no link, no FIFO, capped). No secret id
    leaves: only the secret id store's state and expiry. trust_anchor_path: a trust anchor file the account
    owns, returned as text for root to check."""
    anchor = None
    if trust_anchor_path:
        data = files.read_ca_bundle(trust_anchor_path, "trust_anchor_path")
        anchor = _text(data, "trust_anchor_path file", trust_anchor_path)
    pem = {}
    for kind, path in paths.items():
        # The public paths are the store's links into .minibus/<name>/current/: resolved here, as the account
        # (a link can only lead it to what it may read anyway); the file itself must be a regular file.
        pem[kind] = _text(files.read_bounded(os.path.realpath(path), files.MAX_PEM_BYTES, _WHAT[kind],
                                             missing_ok=True, shown=path), _WHAT[kind], path)
    # The state and the secret id store only feed the metrics: a bad one is shown there, never blocks rsyslog.
    # Both readers are bounded (files.read_bounded); read_state answers {} for anything unreadable.
    state_problem, secret = None, None
    st = _lstat(state_path)
    if st is not None and not stat.S_ISREG(st.st_mode):
        state_problem = "the renewer state file %s is not a regular file" % state_path
    state = health.read_state(state_path)
    if secret_id_store:
        try:
            record = secret_store.load(secret_id_store)
        except MinibusError:
            record = {"state": secret_store.CONSUMED, "problem": "the secret id store is unreadable"}
        if record is not None:
            secret = dict((k, record[k]) for k in ("state", "expires_at", "problem") if k in record)
    return {"pem": pem, "state": state, "state_problem": state_problem, "secret_id": secret,
            "trust_anchor_pem": anchor}


def _text(data, what, path):
    if data is None:
        return None
    try:
        return data.decode("ascii")
    except UnicodeError:
        raise MinibusError("The %s %s is not ASCII text." % (what, path))


# --- checking, as root -----------------------------------------------------------------------------

def _checked_set(seen, p, conf, now):
    """The canonical files to publish (parsed and re-encoded), or PublishRefused."""
    pem = seen["pem"]
    for kind in ("cert", "key"):
        if not pem.get(kind):
            raise _refusal("there is no %s at %s" % (_WHAT[kind], p["%s_path" % kind]))
    if pem.get("chain"):
        chain_pem = pem["chain"]
    elif pem.get("fullchain"):
        # Without chain.pem the chain is what follows the certificate in fullchain.pem.
        following = certs.pem_certificates(pem["fullchain"], "full chain", _refusal)[1:]
        chain_pem = "".join(certs.certificate_pem(c) for c in following)
    else:
        raise _refusal("there is no CA chain at %s" % (p.get("chain_path") or p.get("fullchain_path")))
    try:
        anchors = None
        if seen.get("trust_anchor_pem") is not None:
            anchors = certs.parse_trust_anchors(seen["trust_anchor_pem"].encode("ascii"), p["trust_anchor_path"])[0]
        elif p.get("trust_anchor_path"):
            anchors = issuance.load_trust_anchors(p["trust_anchor_path"])[0]
    except MinibusError as exc:
        raise _refusal(_fragment(exc.message))
    cert, key, chain = certs.check_installed(pem["cert"], pem["key"], chain_pem, p, anchors, conf["key_usage"],
                                             _refusal, now)
    cert_text = certs.certificate_pem(cert)
    intermediates = [c for c in chain if c.subject != c.issuer]  # the roots stay with the trust anchor
    return {
        "cert": cert_text,
        "key": certs.private_key_pem(key),
        "chain": "".join(certs.certificate_pem(c) for c in chain),
        "fullchain": cert_text + "".join(certs.certificate_pem(c) for c in intermediates),
    }, cert


# --- metrics ---------------------------------------------------------------------------------------

def _record(seen, p, published, now):
    """The status record of the checked set (health.status), with the account's state and secret id state."""
    decision = certs.needs_renewal(published["cert"], published["key"], p, now, p["renew_before_seconds"])
    secret = _clean(seen.get("secret_id"), ("state", "expires_at", "problem"), ()) if seen.get("secret_id") else None
    uses_store = bool(p.get("secret_id_store"))
    secret_problem = secret_store.problem(secret, now) if uses_store else None
    state = _clean(seen.get("state"), _STATE_TEXT, ("renewals_total", "failures_total"))
    if seen.get("state_problem"):
        state = dict(state, last_result="failed", last_message=seen["state_problem"])
    return health.status(issuance.plan_result(decision, secret_problem), secret, state, now, uses_store=uses_store)


_STATE_TEXT = ("last_attempt", "last_result", "last_message", "last_success", "last_failure", "last_renewal")


def _clean(record, texts, counts):
    """Only the fields the status record uses, of the types it expects: the account wrote them."""
    record = record if isinstance(record, dict) else {}
    clean = dict((k, record[k]) for k in texts if isinstance(record.get(k), str))
    clean.update((k, record[k]) for k in counts if isinstance(record.get(k), int) and not isinstance(record[k], bool))
    return clean


def _refused_record(store, p, message, now):
    """After a refusal: the published (root's) certificate, and a failed last run carrying the sentence."""
    content = store.read()
    decision = certs.needs_renewal(content.get("cert"), content.get("key"), p, now, p["renew_before_seconds"])
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    state = {"last_attempt": stamp, "last_result": "failed", "last_message": message, "last_failure": stamp}
    return health.status(issuance.plan_result(decision, None), None, state, now, uses_store=False)


def _metrics(conf, p, record, result):
    """Root's textfile for node_exporter: a regular file, root 0644, replaced atomically (rename(2) also
    replaces an earlier version's link into the account's directory, without following it)."""
    path = conf.get("metrics_path")
    if not path:
        return
    try:
        _root_directory(os.path.dirname(path), "the metrics directory")
        text = health.prometheus(record, p["common_name"])
        st = _lstat(path)
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o644:
            try:
                if files.read_bounded(path, files.MAX_JSON_BYTES, "metrics file") == text.encode("utf-8"):
                    return
            except MinibusError:
                pass
        files.write_file_atomic(path, text, mode=0o644, uid=0, gid=0)
        result["metrics_written"] = True
    except MinibusError as exc:  # monitoring never stops rsyslog's certificate from being published
        result["warnings"].append("the metrics were not written: %s" % exc.message)


# --- the rsyslog restart (tcp only) ----------------------------------------------------------------

def _restart_when_due(store, directory, restart, result):
    """Restart rsyslog when the published set is newer than the one it was last restarted for, at most
    once per RESTART_INTERVAL_SECONDS (a pending restart is done by a later publish). The stamp is root's."""
    version = os.readlink(store.current)
    stamp = os.path.join(directory, RESTART_STAMP)
    st = _lstat(stamp)
    done = None
    if st is not None and stat.S_ISREG(st.st_mode) and st.st_uid == 0:
        try:
            done = files.read_bounded(stamp, 4096, "restart stamp").decode("ascii", "replace").strip()
        except MinibusError:
            done = None
    if done == version:
        return
    if st is not None and time.time() - st.st_mtime < RESTART_INTERVAL_SECONDS:
        result["restart_pending"] = True
        return
    error = restart()
    if error:
        result["warnings"].append("rsyslog was not restarted (%s): a later publish tries again" % error)
        result["restart_pending"] = True
        return
    files.write_file_atomic(stamp, version + "\n", mode=0o644, uid=0, gid=0)
    result["restarted"] = True


def _try_restart_rsyslog():
    """None when done, else why not (a short phrase)."""
    try:
        done = subprocess.run(RESTART_COMMAND, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True, timeout=120, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return "%s: %s" % (" ".join(RESTART_COMMAND), type(exc).__name__)
    if done.returncode != 0:
        return "%s exited %d" % (" ".join(RESTART_COMMAND), done.returncode)
    return None


# --- small helpers ---------------------------------------------------------------------------------

def _lstat(path):
    return files.lstat_or_none(path, "nothing was published")


def _root_directory(path, what, create=False):
    """path must be a real directory of root's that only root can write (else the account could swap entries)."""
    st = _lstat(path)
    if st is None and create:
        # created only inside a parent no other account can write, so nobody can swap the new name
        _root_directory(os.path.dirname(path.rstrip("/")) or "/", "the directory holding " + what)
        try:
            os.mkdir(path, 0o755)
        except OSError as exc:
            if exc.errno != errno.EEXIST:
                raise MinibusError("Could not create %s %s (%s); nothing was published."
                                   % (what, path, os.strerror(exc.errno)))
        st = _lstat(path)
    if st is None:
        raise MinibusError("%s %s does not exist: run the minibus_certs role again; nothing was published."
                           % (what[:1].upper() + what[1:], path))
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
        raise MinibusError("%s %s must be a directory owned by root and writable by root only (it is not: a link, "
                           "another owner or a group/world-writable mode); nothing was published."
                           % (what[:1].upper() + what[1:], path))


def cli(params, stdout, stderr):
    """``minibus-certs-renew --publish``: one line, exit 0 (published or unchanged) or 1 (refused/failed)."""
    try:
        result = publish(params)
    except MinibusError as exc:
        stderr.write("minibus-certs-renew: publish failed: %s\n" % exc.message)
        stderr.flush()
        return 1
    except Exception as exc:  # pylint: disable=broad-except
        stderr.write("minibus-certs-renew: publish failed with an unexpected %s (a bug: please report it); the "
                     "published set is the old one or the new one, never a mix.\n" % type(exc).__name__)
        stderr.flush()
        return 1
    for warning in result["warnings"]:
        stderr.write("minibus-certs-renew: warning: %s\n" % warning)
    restart = ("; rsyslog restarted" if result["restarted"] else
               "; rsyslog restart pending (at most one per %d min)" % (RESTART_INTERVAL_SECONDS // 60)
               if result["restart_pending"] else "")
    stdout.write("minibus-certs-renew: %s: serial %s, valid until %s%s\n" % (
        "published" if result["changed"] else "unchanged", result["serial"], result["not_after"], restart))
    stdout.flush()
    stderr.flush()
    return 0
