# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""The renewer's configuration file: JSON whose keys are the vault_pki_issue option names, plus a few of its own.

Its own file so that both the renewer and the local fact (fact.py) read it from below, with no import
between the two.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json
import os

from .errors import MinibusError
from .files import foreign_directory, read_bounded
from .issuance import CERTIFICATE_SPEC
from .options import AUTH_SPEC, CONNECTION_SPEC

# Config keys the renewer understands beyond the module's options.
RENEWER_KEYS = ("stamp_path", "state_path", "metrics_path", "mode", "owner", "group", "publish",
                # the timer's OnCalendar/RandomizedDelaySec, for the outage budget --status states
                "timer_on_calendar", "timer_randomized_delay")

# Far above any real config (a few hundred bytes), far below what could hurt the reader.
MAX_CONFIG_BYTES = 256 * 1024


def load_config(path):
    """The renewer's parameters from its JSON config: the module's defaults, then the file's keys.

    Read bounded (no link, regular file only, a size cap). As root, the config says which files root may
    touch and as whom, so root reads it only when root alone can change it: a root-owned file, writable by
    no group or other, in directories that are root's alone; anything else is one sentence, nothing read.
    """
    is_root = os.geteuid() == 0
    if is_root:
        foreign = foreign_directory(path)
        if foreign is not None:
            raise MinibusError("The renewer config %s is in %s, which another account can change, so root does not "
                               "trust it: keep it where only root can write (the role puts it in /etc/minibus-certs); "
                               "nothing was done." % (path, foreign[0]))
    data = read_bounded(path, MAX_CONFIG_BYTES, "renewer config", missing_ok=True,
                        check=(lambda st: _root_only(path, st)) if is_root else None)
    if data is None:
        raise MinibusError("Could not read the renewer config %s (nothing is there): run the role that installs "
                           "the renewer, or pass --config with the right path." % path)
    try:
        config = json.loads(data.decode("utf-8"))
    except ValueError as exc:
        raise MinibusError("The renewer config %s is not valid JSON (%s): fix the file (the role writes it)."
                           % (path, exc))
    if not isinstance(config, dict):
        raise MinibusError("The renewer config %s is not a JSON object: fix the file (the role writes it)." % path)
    known = set(CONNECTION_SPEC) | set(AUTH_SPEC) | set(CERTIFICATE_SPEC) | set(RENEWER_KEYS)
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


def _root_only(path, st):
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise MinibusError("The renewer config %s is owned by uid %d or writable by others than root, so root does "
                           "not trust it: make it root's, mode 0640 or stricter (the role does); nothing was done."
                           % (path, st.st_uid))
