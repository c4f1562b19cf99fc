# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The read-only fleet audit (playbooks/audit.yml, minibus.pki.vault_audit) on a lab of its own.

Two hosts bootstrapped and renewed against an OpenBao bootstrapped by vault_bootstrap.yml, their local
facts as the role's fact computes them. The audit runs as ansible-playbook with a minibus-auditor token:
clean at first; a secret id kept alive with a host's credentials and one naming no inventory host are
reported (failed); after destroying them by accessor it is clean again. OpenBao's audit log shows the
audit sent only lists, reads and secret-id accessor lookups.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import subprocess
import sys

import pytest

from labs.hosts import (
    APPROLE_NAME, BIN_DIR, bootstrap_host, clean_env, host_params, RENEWAL_MOUNT, REPO_ROOT, ROLE_ID,
    run_renewer, store_record, write_renewer_config
)
from labs.vault import bootstrapped_vault
from ansible_collections.minibus.pki.plugins.module_utils.fact import local_fact

HOSTS = ("host1.minibus.test", "host2.minibus.test")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with bootstrapped_vault("minibus-audit-bao-") as vault:
        base = tmp_path_factory.mktemp("audit-lab")
        inventory = ["[rsyslog_clients]"]
        for name in HOSTS:
            directory = str(base / name)
            os.makedirs(directory)
            bootstrap_host(vault, directory, common_name=name, alt_names=[])
            proc = run_renewer(write_renewer_config(vault, directory, common_name=name, alt_names=[]))
            assert proc.returncode == 0, proc.stderr
            fact_dir = os.path.join(directory, "facts.d")
            os.makedirs(fact_dir)
            fact = local_fact(host_params(vault, directory, common_name=name, alt_names=[]))
            assert not fact.get("error") and fact["status"]["last_success"], fact
            with open(os.path.join(fact_dir, "minibus_certs.fact"), "w") as handle:
                json.dump(fact, handle)
            inventory.append("%s ansible_connection=local ansible_python_interpreter=%s minibus_audit_fact_path=%s"
                             % (name, sys.executable, fact_dir))
        path = str(base / "inventory.ini")
        with open(path, "w") as handle:
            handle.write("\n".join(inventory) + "\n")
        auditor = vault.api("POST", "auth/token/create", json_body={"policies": ["minibus-auditor"], "ttl": "1h"})
        yield vault, str(base), path, auditor["auth"]["client_token"]


def _audit(vault, inventory, auditor):
    """Run playbooks/audit.yml; returns (returncode, output, the audit log entries it caused)."""
    with open(vault.audit_log) as handle:
        offset = len(handle.read())
    proc = subprocess.run(
        [os.path.join(BIN_DIR, "ansible-playbook"), "-i", inventory, os.path.join(REPO_ROOT, "playbooks", "audit.yml"),
         "-e", "minibus_audit_become=false"],
        check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, timeout=300,
        env=clean_env(VAULT_ADDR=vault.url, VAULT_CACERT=vault.ca_cert, VAULT_TOKEN=auditor))
    with open(vault.audit_log) as handle:
        entries = [json.loads(line) for line in handle.read()[offset:].splitlines() if line.strip()]
    return proc.returncode, proc.stdout, entries


def _assert_read_only(entries):
    requests = [e["request"] for e in entries if e.get("type") == "request"]
    assert requests, "the audit sent no request"
    for request in requests:
        read_only = request["operation"] in ("read", "list") or (
            request["operation"] == "update" and request["path"].endswith("/secret-id-accessor/lookup"))
        assert read_only, "the audit sent %s %s" % (request["operation"], request["path"])
    return requests


def test_audit_reports_a_kept_secret_id_and_is_clean_after_destroying_it(lab):
    vault, base, inventory, auditor = lab
    code, out, entries = _audit(vault, inventory, auditor)
    assert code == 0, out[-3000:]
    assert "The audit found nothing" in out
    _assert_read_only(entries)

    # A thief with host1's stored secret id logs in, hands host1 one fresh secret id (so the host keeps
    # renewing) and keeps another; a third names a host nobody has.
    host1 = os.path.join(base, HOSTS[0])
    stolen = store_record(host1)["secret_id"]
    thief = vault.api("POST", "auth/%s/login" % RENEWAL_MOUNT, token=None,
                      json_body={"role_id": ROLE_ID, "secret_id": stolen})["auth"]["client_token"]
    kept = [vault.unwrap(vault.mint_wrapped(token=thief, mount=RENEWAL_MOUNT, metadata={"host": host}))
            for host in (HOSTS[0], HOSTS[0], "ghost.minibus.test")]

    code, out, entries = _audit(vault, inventory, auditor)
    assert code != 0, out[-3000:]
    assert "Host %s has 2 live secret ids" % HOSTS[0] in out, out[-3000:]
    assert kept[2]["secret_id_accessor"] in out and "'ghost.minibus.test'" in out, out[-3000:]
    assert HOSTS[1] not in out.split("The audit found", 1)[1].split("PLAY RECAP")[0], out[-3000:]
    for secret in [stolen, thief] + [k["secret_id"] for k in kept]:
        assert secret not in out
    requests = _assert_read_only(entries)
    assert any(r["path"].startswith("auth/minibus-bootstrap/") for r in requests), "bootstrap mount not audited"

    for extra in kept[1:]:
        vault.api("POST", "auth/%s/role/%s/secret-id-accessor/destroy" % (RENEWAL_MOUNT, APPROLE_NAME),
                  json_body={"secret_id_accessor": extra["secret_id_accessor"]})
    code, out, entries = _audit(vault, inventory, auditor)
    assert code == 0, out[-3000:]
    _assert_read_only(entries)
