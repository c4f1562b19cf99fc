# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""The on-host renewer: no Ansible, the same ensure_certificate() as the vault_pki_issue module.

Run by minibus-certs-renew.service as the unprivileged renewal account. Reads a JSON config whose keys
are the vault_pki_issue option names, prints one line for the journal, exits 0 (nothing to do, or
renewed) or 1 (failed: the old certificate stays in place; the next timer run tries again). Every run
is recorded in a state file and a Prometheus textfile (health.py); --status and --check read them.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import io
import json
import os
import sys

from .errors import MinibusError
from . import _privdrop, health, outage, publish, vault
from .files import foreign_directory, write_file_atomic
from .issuance import ensure_certificate, issuance_deadline, owner_ids
from .options import resolve_env
from .renewer_config import load_config


def _say(stream, line):
    # One line per event: the journal shows it as one entry.
    stream.write(line + "\n")
    stream.flush()


def main(argv=None, environ=None):
    parser = argparse.ArgumentParser(prog="minibus-certs-renew",
                                     description="Renew this host's minibus.pki certificate when it is due.")
    parser.add_argument("--config", default="/etc/minibus-certs/renewer.json")
    parser.add_argument("--force", action="store_true", help="renew even if the certificate is still good")
    parser.add_argument("--check", action="store_true",
                        help="Nagios-style check, no Vault request: exit 0 ok, 1 renewal due, "
                             "2 failed, expired or no usable secret id")
    parser.add_argument("--status", action="store_true", help="show the certificate's health, no Vault request")
    parser.add_argument("--json", action="store_true", help="with --status: print JSON instead of a table")
    parser.add_argument("--publish", action="store_true",
                        help="as root: check the account's certificate and key, publish root-owned copies for "
                             "rsyslog and the metrics for node_exporter (no Vault request)")
    args = parser.parse_args(argv)
    environ = os.environ if environ is None else environ
    try:
        params = resolve_env(load_config(args.config), environ)
    except MinibusError as exc:
        _say(sys.stderr, "minibus-certs-renew: failed: %s" % exc.message)
        return health.CRITICAL if args.check else 1
    if args.publish:  # root's own job (publish.py reads the account's files through the dropped child)
        return publish.cli(params, sys.stdout, sys.stderr)
    if os.geteuid() == 0:
        return _as_account(params, args)
    return _run(params, args)


def _run(params, args):
    if args.check or args.status:
        return _report(params, args)
    return _renew(params, args.force)


def _as_account(params, args):
    """Root reads only its own config: every file of the account's (store, secret id store, state, stamp,
    metrics) is read and written by a child that has become the owner for good (_privdrop.run_as).

    Without owner, root works itself only where every directory it would touch is root's alone.
    """
    failed = health.CRITICAL if args.check else 1
    try:
        if params.get("owner") in (None, ""):
            _check_root_only_dirs(params, args.config)
            return _run(params, args)
        uid, gid = owner_ids(params["owner"], params.get("group"))
        deadline = (_privdrop.DEFAULT_DEADLINE_SECONDS if args.check or args.status
                    else issuance_deadline(params) + 20)
        if not (args.check or args.status):
            vault.preload()
        code, out, err = _privdrop.run_as(uid, gid, _captured, dict(params, owner=None, group=None), vars(args),
                                          deadline_seconds=deadline, work="the renewer")
    except MinibusError as exc:
        _say(sys.stderr, "minibus-certs-renew: failed: %s" % exc.message)
        return failed
    sys.stdout.write(out)
    sys.stdout.flush()
    sys.stderr.write(err)
    sys.stderr.flush()
    return code


def _account_name(uid, unknown=None):
    import pwd  # pylint: disable=import-outside-toplevel
    try:
        return pwd.getpwuid(uid).pw_name if uid != 0 else (unknown or "root")
    except KeyError:
        return unknown or "uid %d" % uid


def _captured(params, args):
    """In the child: the run, its lines returned for the parent to print."""
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
    code = _run(params, argparse.Namespace(**args))
    return code, sys.stdout.getvalue(), sys.stderr.getvalue()


def _check_root_only_dirs(params, config):
    """Root without owner: every directory holding a file it would touch must be root's and closed to others."""
    state_path, metrics_path = health.default_paths(params)
    names = ("cert_path", "key_path", "chain_path", "ca_path", "fullchain_path", "secret_id_store", "stamp_path")
    for path in [params.get(n) for n in names] + [state_path, metrics_path]:
        if not path:
            continue
        foreign = foreign_directory(path)
        if foreign is not None:
            directory, uid = foreign
            raise MinibusError("%s belongs to %s or others can write it, and root does not work in a directory "
                               "another account can change: run minibus-certs-renew as the renewal account "
                               "(sudo -u %s minibus-certs-renew ...) or set owner in %s; nothing was done."
                               % (directory, _account_name(uid), _account_name(uid, "<account>"), config))


def _health(params):
    """The status record (no Vault request); as root with an owner set, read by that account (health.collect).

    --force is this run's request, not the certificate's state: the record shows whether it is due.
    """
    record = health.collect(dict(params, force=False))
    record.update(_outage_budget(params))
    return record


def _outage_budget(params):
    """The longest Vault outage this configuration survives (outage.py): --status, --json and the metrics."""
    try:
        info = outage.budget_of(params.get("ttl"), params.get("renew_before"), params.get("timer_on_calendar"),
                                params.get("timer_randomized_delay"))
    except MinibusError as exc:
        return {"outage_budget_seconds": None, "outage_budget": "unknown (%s)" % exc.message}
    return {"outage_budget_seconds": info["outage_budget_seconds"], "outage_budget": info["text"]}


def _report(params, args):
    try:
        record = _health(params)
    except MinibusError as exc:
        _say(sys.stderr, "minibus-certs-renew: failed: %s" % exc.message)
        return health.CRITICAL if args.check else 1
    if args.status and args.json:
        _say(sys.stdout, json.dumps(record, sort_keys=True))
    elif args.status:
        sys.stdout.write(health.table(record))
    else:
        _say(sys.stdout, health.nagios_line(record))
    return record["code"] if args.check else 0


def _renew(params, force):
    if force:
        params["force"] = True
    params["minted_by"] = "renewer"
    error, result = None, None
    try:
        result = ensure_certificate(params)
        if result["issued"] and params.get("stamp_path"):
            # For the tcp transport a root-owned path unit watches this file and restarts rsyslog (the
            # renewer never runs as root); with relp nothing restarts, librelp reads the new files per session.
            write_file_atomic(params["stamp_path"], "%s\n" % result["serial"], mode=0o644)
    except MinibusError as exc:
        error = exc.message
    except Exception as exc:  # a bug must still leave one line and a non-zero exit, never a secret
        error = "failed with an unexpected %s; the old certificate is untouched" % type(exc).__name__
    _record(params, error, result)
    if error is not None:
        _say(sys.stderr, "minibus-certs-renew: failed: %s" % error)
        return 1
    for warning in result["warnings"]:
        _say(sys.stderr, "minibus-certs-renew: warning: %s" % warning)
    requests = result.get("vault_requests", 0)
    if result["issued"]:
        _say(sys.stdout, "minibus-certs-renew: renewed: serial %s, valid until %s (%s); %d Vault requests"
             % (result["serial"], result["not_after"], result["reason"], requests))
    elif result["changed"]:
        _say(sys.stdout, "minibus-certs-renew: secret id rotated (%s); %d Vault requests" % (result["reason"], requests))
    else:
        _say(sys.stdout, "minibus-certs-renew: nothing to do: %s" % result["reason"])
    return 0


def _record(params, error, result):
    """State file and Prometheus textfile after every run; a failure here never hides the run's own result."""
    state_path, metrics_path = health.default_paths(params)
    if not os.path.isdir(os.path.dirname(state_path)):
        return  # nothing installed yet (the role creates the directory): nothing to watch either
    try:
        issued = bool(result and result["issued"])
        health.record_attempt(state_path, error, issued, result and result.get("serial"))
        if not params.get("publish"):
            # With a publish section (the role's config) root renders the metrics from the checked set
            # (publish.py); the account's own textfile would only be a stale copy nobody reads.
            health.write_metrics(metrics_path, _health(params), params["common_name"])
    except MinibusError as exc:
        _say(sys.stderr, "minibus-certs-renew: warning: could not record the run's health (%s)" % exc.message)
    except Exception as exc:  # never let monitoring break a renewal
        _say(sys.stderr, "minibus-certs-renew: warning: could not record the run's health (unexpected %s)"
             % type(exc).__name__)
