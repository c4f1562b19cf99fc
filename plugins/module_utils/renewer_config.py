# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""The renewer's configuration file: JSON whose keys are the vault_pki_issue option names, plus a few of its own.

Its own file so that both the renewer and the local fact (health.py) read it from below, with no import
between the two.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

from .errors import MinibusError
from .issuance import CERTIFICATE_SPEC
from .options import AUTH_SPEC, CONNECTION_SPEC

# Config keys the renewer understands beyond the module's options.
RENEWER_KEYS = ("stamp_path", "state_path", "metrics_path", "mode", "owner", "group", "publish",
                # the timer's OnCalendar/RandomizedDelaySec, for the outage budget --status states
                "timer_on_calendar", "timer_randomized_delay")


def load_config(path):
    try:
        with open(path, "r") as handle:
            config = json.load(handle)
    except (IOError, OSError) as exc:
        raise MinibusError("Could not read the renewer config %s (%s)." % (path, exc.strerror))
    except ValueError as exc:
        raise MinibusError("The renewer config %s is not valid JSON (%s)." % (path, exc))
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
