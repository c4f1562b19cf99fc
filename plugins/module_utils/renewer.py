# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to minibus.pki: no compatibility promise to other collections.
"""The on-host renewer: no Ansible, the same ensure_certificate() as the vault_pki_issue module.

Run by minibus-certs-renew.service as the unprivileged renewal account. Reads a JSON config whose keys
are the vault_pki_issue option names, prints one line for the journal, exits 0 (nothing to do, or
renewed) or 1 (failed: the old certificate stays in place; the next timer run tries again).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import os
import sys

from .errors import MinibusError
from .files import write_file_atomic
from .issuance import CERTIFICATE_SPEC, ensure_certificate
from .options import AUTH_SPEC, CONNECTION_SPEC, resolve_env

# Config keys the renewer understands beyond the module's options.
_RENEWER_KEYS = ("stamp_path", "mode", "owner", "group")


def load_config(path):
    try:
        with open(path, "r") as handle:
            config = json.load(handle)
    except (IOError, OSError) as exc:
        raise MinibusError("Could not read the renewer config %s (%s)." % (path, exc.strerror))
    except ValueError as exc:
        raise MinibusError("The renewer config %s is not valid JSON (%s)." % (path, exc))
    known = set(CONNECTION_SPEC) | set(AUTH_SPEC) | set(CERTIFICATE_SPEC) | set(_RENEWER_KEYS)
    unknown = sorted(set(config) - known)
    if unknown:
        raise MinibusError("The renewer config %s has unknown keys %s: fix the file (the role writes it)."
                           % (path, ", ".join(unknown)))
    for name in ("token", "secret_id", "secret_id_wrapping_token"):
        if name in config:
            raise MinibusError("The renewer config %s must not hold %s: secrets live only in the secret id store."
                               % (path, name))
    params = {}
    for spec in (CONNECTION_SPEC, AUTH_SPEC, CERTIFICATE_SPEC):
        for name, option in spec.items():
            params[name] = option.get("default")
    params.update(config)
    return params


def _say(stream, line):
    # One line per event: the journal shows it as one entry.
    stream.write(line + "\n")
    stream.flush()


def main(argv=None, environ=None):
    parser = argparse.ArgumentParser(prog="minibus-certs-renew",
                                     description="Renew this host's minibus.pki certificate when it is due.")
    parser.add_argument("--config", default="/etc/minibus-certs/renewer.json")
    parser.add_argument("--force", action="store_true", help="renew even if the certificate is still good")
    parser.add_argument("--check", action="store_true", help="only say whether a renewal is due")
    args = parser.parse_args(argv)
    environ = os.environ if environ is None else environ
    try:
        params = resolve_env(load_config(args.config), environ)
        params["minted_by"] = "renewer"
        if args.force:
            params["force"] = True
        result = ensure_certificate(params, check_mode=args.check)
        if result["issued"] and params.get("stamp_path"):
            # A root-owned path unit watches this file and restarts rsyslog: the renewer never runs as root.
            write_file_atomic(params["stamp_path"], "%s\n" % result["serial"], mode=0o644)
    except MinibusError as exc:
        _say(sys.stderr, "minibus-certs-renew: failed: %s" % exc.message)
        return 1
    except Exception as exc:  # a bug must still leave one line and a non-zero exit, never a secret
        _say(sys.stderr, "minibus-certs-renew: failed with an unexpected %s; the old certificate is untouched."
             % type(exc).__name__)
        return 1
    for warning in result["warnings"]:
        _say(sys.stderr, "minibus-certs-renew: warning: %s" % warning)
    requests = result.get("vault_requests", 0)
    if result["issued"]:
        _say(sys.stdout, "minibus-certs-renew: renewed: serial %s, valid until %s (%s); %d Vault requests"
             % (result["serial"], result["not_after"], result["reason"], requests))
    elif result["changed"] and args.check:
        _say(sys.stdout, "minibus-certs-renew: due: %s" % result["reason"])
    elif result["changed"]:
        _say(sys.stdout, "minibus-certs-renew: secret id rotated (%s); %d Vault requests" % (result["reason"], requests))
    else:
        _say(sys.stdout, "minibus-certs-renew: nothing to do: %s" % result["reason"])
    return 0
