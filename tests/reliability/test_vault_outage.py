# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Vault sealed, unreachable, a replayed secret id, an expired wrapping token: one clear line, no damage."""

from __future__ import absolute_import, division, print_function

import time

import pytest

from labs.hosts import (
    assert_host_consistent, bootstrap_host, free_port, host_params, one_line_output, paths, RENEWAL_MOUNT,
    ROOT_TOKEN, run_renewer, store_record, tree_digest, write_renewer_config
)
from ansible_collections.minibus.pki.plugins.module_utils import issuance, secret_store
from ansible_collections.minibus.pki.plugins.module_utils.errors import WrappingTokenRejected


def cert_bytes(directory):
    with open(paths(directory)["cert_path"], "rb") as handle:
        return handle.read()


def test_sealed_vault_fails_cleanly_and_consumes_nothing(vault, host_dir):
    bootstrap_host(vault, host_dir)
    config = write_renewer_config(vault, host_dir, retries=1)
    before_cert, before_secret = cert_bytes(host_dir), store_record(host_dir)["secret_id"]
    vault.seal()
    try:
        started = time.time()
        proc = run_renewer(config)
        elapsed = time.time() - started
    finally:
        vault.unseal()
    assert proc.returncode == 1
    line = one_line_output(proc)
    assert "sealed" in line and vault.url in line, line
    assert elapsed < 30
    assert cert_bytes(host_dir) == before_cert
    assert_host_consistent(host_dir)
    record = store_record(host_dir)
    assert record["secret_id"] == before_secret
    # design: marked in-use before the login; a sealed Vault spent nothing, and in-use is still tried
    assert record["state"] in ("ready", "in-use"), record
    after = run_renewer(config)
    assert after.returncode == 0, after.stderr
    assert "renewed" in after.stdout
    assert cert_bytes(host_dir) != before_cert
    assert store_record(host_dir)["secret_id"] != before_secret
    assert store_record(host_dir)["state"] == "ready"
    assert_host_consistent(host_dir)


class StoreNotReady(AssertionError):
    """The specific invariant the test below guards (kept distinct from incidental failures)."""


def test_sealed_vault_leaves_store_ready(vault, host_dir):
    bootstrap_host(vault, host_dir)
    config = write_renewer_config(vault, host_dir, retries=1)
    vault.seal()
    try:
        assert run_renewer(config).returncode == 1
    finally:
        vault.unseal()
    record = store_record(host_dir)
    if record["state"] != "ready":
        raise StoreNotReady("store state after a sealed-Vault failure: %s" % record["state"])


def test_unreachable_vault_fails_cleanly(vault, host_dir):
    bootstrap_host(vault, host_dir)
    closed = "https://127.0.0.1:%d" % free_port()  # nothing listens there: connection refused
    config = write_renewer_config(vault, host_dir, url=closed, retries=1)
    before_cert, before_secret = cert_bytes(host_dir), store_record(host_dir)["secret_id"]
    proc = run_renewer(config)
    assert proc.returncode == 1
    line = one_line_output(proc)
    assert "Could not connect" in line and closed in line and "connection refused" in line, line
    assert cert_bytes(host_dir) == before_cert
    assert store_record(host_dir)["secret_id"] == before_secret
    assert_host_consistent(host_dir)
    # the same host against the real Vault works: the secret id was not spent
    good = run_renewer(write_renewer_config(vault, host_dir, name="good.json"))
    assert good.returncode == 0, good.stderr


def test_replayed_secret_id_is_one_clear_line_and_marked_consumed(vault, host_dir):
    bootstrap_host(vault, host_dir)
    config = write_renewer_config(vault, host_dir)
    before_cert = cert_bytes(host_dir)
    # a renewal-mount secret id, what the store holds
    used = vault.unwrap(vault.mint_wrapped(token=ROOT_TOKEN, mount=RENEWAL_MOUNT))["secret_id"]
    vault.login(used)  # spends it
    secret_store.save(paths(host_dir)["secret_id_store"], used)
    assert store_record(host_dir)["state"] == "ready"
    proc = run_renewer(config)
    assert proc.returncode == 1
    line = one_line_output(proc)
    assert "already used" in line, line
    assert used not in proc.stdout + proc.stderr
    assert store_record(host_dir)["state"] == "consumed"
    assert cert_bytes(host_dir) == before_cert
    assert_host_consistent(host_dir)
    # the next run says what is needed, without a Vault request
    again = run_renewer(config)
    assert again.returncode == 1
    assert "next Ansible run" in one_line_output(again)


def test_expired_wrapping_token_changes_nothing(vault, host_dir):
    bootstrap_host(vault, host_dir)
    wrapping = vault.mint_wrapped(wrap_ttl="1s")
    time.sleep(2.5)
    before = tree_digest(host_dir)
    with pytest.raises(WrappingTokenRejected) as info:
        issuance.ensure_certificate(host_params(vault, host_dir, secret_id_wrapping_token=wrapping, force=True))
    message = info.value.message
    assert "wrapping token is not valid" in message and "expired" in message, message
    assert "\n" not in message and wrapping not in message
    assert tree_digest(host_dir) == before
    assert_host_consistent(host_dir)
