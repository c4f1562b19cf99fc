# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fail if any secret of a lab run appears in the given output files.

Secrets: every token, wrapping token, secret id and private key in OpenBao's raw audit log
(log_raw = true), the private keys and stored secret ids found on the hosts, and any --secret.
Usage: leak_scan.py --audit AUDIT.log [--secrets-file F] [--secret S ...] OUTPUT_FILE...
Exit 0 and a summary line when nothing leaked; exit 1 and one line per leak otherwise.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import argparse
import json
import re
import sys

SECRET_KEYS = ("client_token", "token", "secret_id", "private_key", "wrapping_token")
_MIN_LENGTH = 8  # shorter strings ("root", ids of test fixtures) would match ordinary words


def _walk(node, found):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in SECRET_KEYS and isinstance(value, str):
                found.setdefault(key, set()).add(value)
            else:
                _walk(value, found)
    elif isinstance(node, list):
        for value in node:
            _walk(value, found)


def audit_secrets(path):
    found = {}
    with open(path) as handle:
        for line in handle:
            line = line.strip()
            if line:
                _walk(json.loads(line), found)
    return found


def file_secrets(path):
    """PEM private key bodies (line by line) and secret ids from JSON records in a text file."""
    text = open(path).read()
    secrets = set()
    for block in re.findall(r"-----BEGIN [A-Z ]*PRIVATE KEY-----(.*?)-----END", text, re.S):
        secrets.update(line for line in block.split() if len(line) >= 16)
    secrets.update(re.findall(r'"secret_id":\s*"([^"]+)"', text))
    return secrets


def expand(secret):
    """A private key is also searched for line by line (a log may wrap or escape it)."""
    parts = {secret}
    if "PRIVATE KEY" in secret:
        parts.update(line for line in secret.split("\\n") + secret.split("\n")
                     if len(line) >= 16 and "PRIVATE KEY" not in line)
    return parts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--audit", required=True)
    parser.add_argument("--secrets-file", action="append", default=[])
    parser.add_argument("--secret", action="append", default=[])
    parser.add_argument("outputs", nargs="+")
    args = parser.parse_args(argv)

    by_kind = audit_secrets(args.audit)
    secrets = set()
    for values in by_kind.values():
        for value in values:
            secrets.update(expand(value))
    for path in args.secrets_file:
        secrets.update(file_secrets(path))
    secrets.update(args.secret)
    secrets = set(s for s in secrets if len(s) >= _MIN_LENGTH)

    counts = dict((k, len(v)) for k, v in sorted(by_kind.items()))
    # The scan must be able to fail: the raw audit log holds the secrets it was built from.
    if not counts.get("secret_id") or not counts.get("client_token") or not counts.get("token"):
        print("the raw audit log yielded too few secrets (%s): is log_raw on?" % counts)
        return 1
    with open(args.audit) as handle:
        audit_text = handle.read()
    if not any(s in audit_text for s in secrets):
        print("self-check failed: no collected secret is found in the audit log itself")
        return 1

    leaks = []
    for path in args.outputs:
        try:
            text = open(path, errors="replace").read()
        except (IOError, OSError):
            continue
        leaks.extend((path, s) for s in secrets if s in text)
        if "PRIVATE KEY-----" in text:
            leaks.append((path, "a PEM private key marker"))
    for path, secret in leaks:
        print("LEAK in %s: %s... (%d chars)" % (path, secret[:6], len(secret)))
    if leaks:
        return 1
    print("no secret in %d output files (%d secrets from the audit log %s, the hosts and the broker token)"
          % (len(args.outputs), len(secrets), counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
