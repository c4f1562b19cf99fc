# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Core rules against the real dev OpenBao: host-minted secret ids name the host; a malformed
secret id store means re-bootstrap, never a crash."""

from __future__ import absolute_import, division, print_function

import json

from labs.hosts import APPROLE_NAME, bootstrap_host, host_params, paths, run_renewer, store_record, \
    write_renewer_config
from ansible_collections.minibus.pki.plugins.module_utils import issuance


def _metadata(vault, accessor):
    body = vault.api("POST", "auth/approle/role/%s/secret-id-accessor/lookup" % APPROLE_NAME,
                     json_body={"secret_id_accessor": accessor})
    return body["data"]["metadata"]


def test_secret_ids_minted_on_the_host_carry_metadata_naming_it(vault, host_dir):
    bootstrap_host(vault, host_dir)
    expected = {"host": "host1.minibus.test", "minted_by": "vault_pki_issue"}
    assert _metadata(vault, store_record(host_dir)["accessor"]) == expected
    proc = run_renewer(write_renewer_config(vault, host_dir))
    assert proc.returncode == 0, proc.stderr
    expected["minted_by"] = "renewer"
    assert _metadata(vault, store_record(host_dir)["accessor"]) == expected


def test_a_malformed_store_plans_a_rebootstrap_and_the_role_can_repair_it(vault, host_dir):
    bootstrap_host(vault, host_dir)
    store = paths(host_dir)["secret_id_store"]
    record = store_record(host_dir)
    record["expires_at"] = "tomorrow"
    with open(store, "w") as handle:
        json.dump(record, handle)
    plan = issuance.ensure_certificate(host_params(vault, host_dir), check_mode=True)
    assert plan["changed"] and "renewal needs a new secret id" in plan["reason"], plan
    repaired = issuance.ensure_certificate(host_params(vault, host_dir, secret_id_wrapping_token=vault.mint_wrapped()))
    assert repaired["secret_id_rotated"] and store_record(host_dir)["state"] == "ready"
