# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
# Private to minibus.pki: no compatibility promise to other collections.
"""Errors of the minibus.pki core: one sentence for the user, never a secret."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

_REDACTED = "<redacted>"


class MinibusError(Exception):
    """A failure explained in one sentence: what happened and what to do.

    The message is scrubbed of the secrets known at the place it is raised; callers that know
    more secrets scrub again with :func:`scrub` before showing it.
    """

    def __init__(self, message, status=None, vault_errors=None):
        super(MinibusError, self).__init__(message)
        self.message = message
        self.status = status
        self.vault_errors = list(vault_errors or [])
        # True when Vault provably did not act on the request (never connected, sealed, 429):
        # a single-use secret id sent with it is still unspent.
        self.not_processed = False


class VaultUnreachable(MinibusError):
    """Vault could not be reached (connection, TLS or time-out) or is sealed."""


class SecretIdRejected(MinibusError):
    """AppRole login refused: the secret id is invalid, consumed or expired."""


class WrappingTokenRejected(MinibusError):
    """A wrapping token is invalid, used, expired, or was created at an unexpected path."""


class InvalidAnswer(MinibusError):
    """Vault answered, but the answer fails a check (names, validity, chain, key, size, format)."""


class CappedTtl(InvalidAnswer):
    """Vault issued for less than the ttl asked (the PKI role's max_ttl is lower)."""


class InvalidInput(MinibusError):
    """Options that cannot work, found before any network call."""


def scrub(text, secrets):
    """Return text with every non-empty secret replaced by a marker."""
    text = "" if text is None else str(text)
    # Longest first, so that a secret containing another is replaced whole.
    for secret in sorted((str(s) for s in secrets or () if s), key=len, reverse=True):
        if secret and len(str(secret)) >= 4:
            text = text.replace(str(secret), _REDACTED)
    return text


def one_line(text):
    """Fold Vault's multi-line error lists ("1 error occurred: * x") into one line."""
    text = re.sub(r"\d+ errors? occurred:", "", str(text))
    text = re.sub(r"\s*\*\s+", " ", text)
    return re.sub(r"\s+", " ", text).strip().rstrip(".")
