# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import errors


def test_scrub_replaces_every_occurrence():
    text = "token hvs.ABCDEF failed, hvs.ABCDEF again; sid 1234-5678"
    out = errors.scrub(text, ["hvs.ABCDEF", "1234-5678"])
    assert "hvs.ABCDEF" not in out and "1234-5678" not in out
    assert out == "token <redacted> failed, <redacted> again; sid <redacted>"


def test_scrub_ignores_empty_and_tiny_secrets():
    assert errors.scrub("a b c", [None, "", "a"]) == "a b c"
    assert errors.scrub(None, ["x"]) == ""
    assert errors.scrub("no secrets", None) == "no secrets"


@pytest.mark.parametrize("text,expected", [
    ("1 error occurred:\n\t* invalid role or secret ID\n\n", "invalid role or secret ID"),
    ("2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n", "permission denied invalid token"),
    ("Vault is sealed.", "Vault is sealed"),
    ("  spaced \n out  ", "spaced out"),
])
def test_one_line(text, expected):
    assert errors.one_line(text) == expected


def test_minibus_error_fields():
    exc = errors.SecretIdRejected("msg.", 400, ["a"])
    assert isinstance(exc, errors.MinibusError)
    assert (exc.message, exc.status, exc.vault_errors, str(exc)) == ("msg.", 400, ["a"], "msg.")
