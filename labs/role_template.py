# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The minibus_certs role's templates rendered as Ansible renders them (one renderer for every test)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "roles", "minibus_certs")


def _trusted(value):
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, dict):
        return dict((k, _trusted(v)) for k, v in value.items())
    if isinstance(value, list):
        return [_trusted(v) for v in value]
    return value


# Not a file: the rsyslog TLS snippet of the host's kind, the template tasks/rsyslog.yml installs
# (vars/main.yml __minibus_certs_rsyslog_template: one per transport and side).
RSYSLOG_TLS = "minibus-tls.conf.j2"


def render(template, **overrides):
    """templates/<template> with defaults/main.yml and vars/main.yml, then the caller's values.

    RSYSLOG_TLS renders the template the role selects for the given transport and side.
    """
    variables = {}
    for name in ("defaults/main.yml", "vars/main.yml"):
        with open(os.path.join(ROLE, name)) as handle:
            variables.update(yaml.safe_load(handle))
    variables.update(ansible_managed="managed by the test", ansible_check_mode=False)
    variables.update(overrides)
    templar = Templar(loader=DataLoader(), variables=_trusted(variables))
    if template == RSYSLOG_TLS:
        template = templar.template(trust_as_template(variables["__minibus_certs_rsyslog_template"]))
    with open(os.path.join(ROLE, "templates", template)) as handle:
        text = handle.read()
    return templar.template(trust_as_template(text))
