# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The READMEs' ```yaml blocks, as the examples tests take them: found, classified, substituted.

One substitution rule for every test that runs an example as pasted (tests/examples): these strings
are replaced, in this order, and nothing else:

    https://vault.example.org:8200                -> the lab's Vault URL
    /usr/local/share/ca-certificates/vault-ca.crt -> the lab's CA file (the CA of Vault's certificate)
    /etc/ssl/minibus                              -> a directory of the lab (no test writes the machine's /etc)
    example.org                                   -> minibus.test (the domain the bootstrap allows by default)

The command line writes the fleet example (README.md's ``# file: inventory.yml`` block and the
playbooks that apply the role) for a lab of real hosts (tests/examples/test_fleet_on_hosts.sh):

    python -m labs.readme fleet OUTDIR --url URL --ca FILE
"""

from __future__ import absolute_import, division, print_function

import argparse
import os
import re
import sys
import textwrap

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ("README.md", "roles/minibus_certs/README.md", "roles/vault_pki/README.md", "awx/README.md")
FENCE = re.compile(r"^( *)```yaml\n(.*?)^\1```", re.M | re.S)
ROLE = "minibus.pki.minibus_certs"


def blocks(docs=DOCS):
    """(doc, number, text) of every ```yaml block of docs, numbered from 1 per doc."""
    found = []
    for doc in docs:
        with open(os.path.join(REPO, doc)) as handle:
            text = handle.read()
        for number, match in enumerate(FENCE.finditer(text), 1):
            found.append((doc, number, textwrap.dedent(match.group(2))))
    return found


def substitute(text, url, ca, ssl_dir):
    for old, new in (("https://vault.example.org:8200", url),
                     ("/usr/local/share/ca-certificates/vault-ca.crt", ca),
                     ("/etc/ssl/minibus", ssl_dir),
                     ("example.org", "minibus.test")):
        text = text.replace(old, new)
    return text


def marker(text):
    """('not run' | 'file' | None, its value) from a block's first line."""
    first = text.split("\n", 1)[0].strip()
    found = re.match(r"#\s*(not run|file):\s*(.*)$", first)
    return (found.group(1), found.group(2).strip()) if found else (None, None)


def role_entries(play):
    """The play's role entries that apply minibus.pki.minibus_certs."""
    for entry in play.get("roles") or []:
        entry = {"role": entry} if isinstance(entry, str) else entry
        if entry.get("role", entry.get("name")) == ROLE:
            yield entry


def fleet_examples(docs=DOCS):
    """README.md's inventory block and every playbook block (any doc) that applies the role."""
    inventory, playbooks = None, []
    for doc, number, text in blocks(docs):
        kind, value = marker(text)
        data = yaml.safe_load(text)
        if kind == "file" and value == "inventory.yml" and doc == "README.md":
            inventory = text
        elif kind is None and isinstance(data, list) and data and \
                all(isinstance(p, dict) and "hosts" in p for p in data) and \
                any(list(role_entries(p)) for p in data):
            playbooks.append((doc, number, text))
    return inventory, playbooks


def _write_fleet(outdir, url, ca):
    inventory, playbooks = fleet_examples()
    if inventory is None or not playbooks:
        sys.exit("README.md has no '# file: inventory.yml' block or no playbook applying %s" % ROLE)
    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "inventory.yml"), "w") as handle:
        handle.write(substitute(inventory, url, ca, "/etc/ssl/minibus"))
    for doc, number, text in playbooks:
        name = "%s-block%d.yml" % (doc.replace("/", "_").replace(".md", ""), number)
        with open(os.path.join(outdir, name), "w") as handle:
            handle.write(substitute(text, url, ca, "/etc/ssl/minibus"))
        print(name)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m labs.readme", description=__doc__.split("\n\n", maxsplit=1)[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    fleet = sub.add_parser("fleet", help="write inventory.yml and the role's playbooks, substituted, to OUTDIR")
    fleet.add_argument("outdir")
    fleet.add_argument("--url", required=True, help="the Vault URL the hosts use")
    fleet.add_argument("--ca", required=True, help="the CA file of Vault's certificate, as a path on the hosts")
    args = parser.parse_args(argv)
    _write_fleet(args.outdir, args.url, args.ca)


if __name__ == "__main__":
    main()
