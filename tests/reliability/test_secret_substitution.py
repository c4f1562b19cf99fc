# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A substituted wrapping token at bootstrap, against OpenBao bootstrapped by vault_bootstrap.yml.

The attack: a thief holding one host's stored secret id, able to replace the wrapping token on its way
to a host, logs in, mints two wrapped secret ids for the same AppRole, hands one to the host and keeps
the other. Host tokens may mint only on the renewal mount and the broker only on the bootstrap mount,
so the host tells the substitute by its creation path and refuses it before unwrapping.
"""

from __future__ import absolute_import, division, print_function

import os

import pytest

from labs.hosts import APPROLE_NAME, bootstrap_host, BOOTSTRAP_MOUNT, host_params, RENEWAL_MOUNT, ROLE_ID, store_record
from ansible_collections.minibus.pki.plugins.module_utils import issuance
from ansible_collections.minibus.pki.plugins.module_utils.errors import WrappingTokenRejected
from ansible_collections.minibus.pki.plugins.module_utils.files import STORE_DIR


def _thief_token(vault, victim_dir):
    """Log in with the victim's stored secret id, as a thief who copied secret-id.json would."""
    stolen = store_record(victim_dir)["secret_id"]
    body = vault.api("POST", "auth/%s/login" % RENEWAL_MOUNT, token=None,
                     json_body={"role_id": ROLE_ID, "secret_id": stolen})
    return body["auth"]["client_token"]


def test_a_wrapping_token_minted_with_a_host_credential_is_refused_at_bootstrap(vault, tmp_path):
    victim = str(tmp_path / "victim")
    os.makedirs(victim)
    bootstrap_host(vault, victim)
    thief = _thief_token(vault, victim)
    # The same creation path the broker used before the bootstrap mount existed.
    handed, kept = (vault.mint_wrapped(token=thief, mount=RENEWAL_MOUNT, metadata={"host": "host1.minibus.test"})
                    for _attempt in range(2))

    new_host = str(tmp_path / "new-host")
    os.makedirs(new_host)
    with pytest.raises(WrappingTokenRejected) as info:
        issuance.ensure_certificate(host_params(vault, new_host, secret_id_wrapping_token=handed))
    message = info.value.message
    assert "auth/%s/role/%s/secret-id" % (RENEWAL_MOUNT, APPROLE_NAME) in message, message
    assert "auth/%s/role/%s/secret-id" % (BOOTSTRAP_MOUNT, APPROLE_NAME) in message, message
    assert "substituted" in message and "\n" not in message and handed not in message, message
    assert message.count(". ") == 0, "one sentence: %r" % message
    # Nothing written: the only file is the store's empty lock file (taken before any Vault request).
    written = [os.path.relpath(os.path.join(root, name), new_host)
               for root, _dirs, files in os.walk(new_host) for name in files]
    assert written in ([], [os.path.join("tls", STORE_DIR, ".lock")]), written
    assert all(os.path.getsize(os.path.join(new_host, name)) == 0 for name in written)
    assert not os.path.exists(host_params(vault, new_host)["cert_path"])
    assert store_record(new_host) is None
    # Refused before the unwrap: the token is unspent (the host never touched the secret id).
    looked_up = vault.api("POST", "sys/wrapping/lookup", json_body={"token": handed})
    assert looked_up["data"]["creation_path"] == "auth/%s/role/%s/secret-id" % (RENEWAL_MOUNT, APPROLE_NAME)

    # The host's credentials cannot mint where the host accepts a bootstrap secret id.
    denied = vault.api("POST", "auth/%s/role/%s/secret-id" % (BOOTSTRAP_MOUNT, APPROLE_NAME), token=thief,
                       json_body={}, wrap_ttl="60s", expect=(403,))
    assert "permission denied" in " ".join(denied["errors"])

    # The broker-minted one passes on the same host, and its renewals stay on the renewal mount.
    result = bootstrap_host(vault, new_host)
    assert result["issued"] and result["secret_id_rotated"]
    accessor = store_record(new_host)["accessor"]
    vault.api("POST", "auth/%s/role/%s/secret-id-accessor/lookup" % (RENEWAL_MOUNT, APPROLE_NAME),
              json_body={"secret_id_accessor": accessor})
    # The kept substitute is the "stolen secret id kept alive" that minibus.pki.audit reports.
    assert kept
