# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""auth_method token: a Vault token used as it is (never revoked by the plugin)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from . import vault
from .errors import InvalidInput

NAME = "token"
# The options that select this method when auth_method is not given.
CREDENTIALS = ("token",)
MISSING = "auth_method token needs token (or VAULT_TOKEN/BAO_TOKEN in the environment)."


def given(params):
    return bool(params.get("token"))


def validate(params):
    """Before any network call: raise InvalidInput (one sentence) if the options cannot work."""
    if not given(params):
        raise InvalidInput(MISSING)


def authenticate(client, params):
    client.remember_secret(params["token"])
    return vault.Session(params["token"], owned=False)
