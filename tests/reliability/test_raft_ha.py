# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The collection's core against a 3-node OpenBao HA cluster (Raft, HTTPS): tools/raftbao.py.

* A standby serves the whole host flow: the wrapped secret id minted through the active node is
  looked up, unwrapped and logged in with through a standby, the certificate signed through a
  standby, and a wrapping token spent on one node is spent on all of them.
* Failover: the active node is killed (SIGKILL) between repeated forced renewals; after the
  election the renewals succeed again, a bounded number of attempts fail meanwhile, and the host
  never holds an expired certificate or a key that does not match it.
* With ``url`` listing the nodes, a dead or sealed node is skipped.

Every test leaves the cluster as it found it: a killed or sealed node is brought back.
"""

from __future__ import absolute_import, division, print_function

import os
import signal
import time

import pytest

from labs.hosts import assert_host_consistent, bootstrap_host, host_params, store_record
from labs.vault import APPROLE_NAME, BOOTSTRAP_MOUNT
from ansible_collections.minibus.pki.plugins.module_utils import issuance, vault
from ansible_collections.minibus.pki.plugins.module_utils.errors import InvalidInput, MinibusError, SecretIdRejected
from ansible_collections.minibus.pki.plugins.module_utils.options import validate_connection

# During an election the surviving nodes answer "no active node" for a few seconds. Each failed attempt waits
# this long before the next, so the bound covers an election of up to about a minute.
PAUSE_AFTER_FAILURE = 0.5
MAX_FAILED_ATTEMPTS = 120
RENEWALS_AFTER_FAILOVER = 3
LOOKUP_ROUNDS = 5


def _url_lists_supported():
    try:
        validate_connection({"url": ["https://127.0.0.1:1", "https://127.0.0.1:2"], "timeout": 5, "retries": 0})
    except (InvalidInput, TypeError, AttributeError):
        return False
    return True


needs_url_lists = pytest.mark.skipif(not _url_lists_supported(),
                                     reason="needs url to accept a list of Vault addresses (the client moving on "
                                            "to the next node on a dead, sealed or unusable standby node)")


@pytest.fixture
def cluster(raft_vault):
    """The cluster, settled; afterwards every node is running, unsealed and joined again."""
    raft_vault.use(None)
    raft_vault.cluster.wait_ready()
    yield raft_vault.cluster
    for node in raft_vault.cluster.nodes:
        if node.pid() is None:
            raft_vault.cluster.restart(node)
        elif (node.health() or {}).get("sealed"):
            raft_vault.cluster.unseal(node)
    raft_vault.cluster.wait_ready()
    raft_vault.use(None)


def _serial(directory):
    return assert_host_consistent(directory).serial_number


def test_the_lab_is_one_active_node_and_two_standbys(cluster):
    states = sorted(line.split()[2] for line in cluster.status_lines())
    assert states == ["active", "standby", "standby"], cluster.status_lines()


def test_wrapped_secret_id_from_the_active_node_works_through_a_standby(raft_vault, cluster, host_dir):
    leader = cluster.leader()
    first, second = cluster.standbys()[:2]
    raft_vault.use(leader)
    wrapped = raft_vault.mint_wrapped()
    # lookup (creation path), unwrap, login, mint the next wrapped secret id, unwrap it, sign: all on a standby
    result = issuance.ensure_certificate(host_params(raft_vault, host_dir, url=first.url,
                                                     secret_id_wrapping_token=wrapped))
    assert result["issued"] and result["secret_id_rotated"], result
    assert store_record(host_dir)["state"] == "ready"
    serial = _serial(host_dir)

    # the next renewal through the other standby logs in with the secret id the first standby minted
    again = issuance.ensure_certificate(host_params(raft_vault, host_dir, url=second.url, force=True))
    assert again["issued"] and again["secret_id_rotated"], again
    assert _serial(host_dir) != serial
    assert store_record(host_dir)["state"] == "ready"


def test_a_wrapping_token_spent_on_a_standby_is_spent_on_every_node(raft_vault, cluster):
    leader = cluster.leader()
    standby = cluster.standbys()[0]
    raft_vault.use(leader)
    wrapped = raft_vault.mint_wrapped()
    raft_vault.use(standby)
    assert raft_vault.unwrap(wrapped)["secret_id"]
    for node in cluster.nodes:
        raft_vault.use(node)
        body = raft_vault.api("POST", "sys/wrapping/unwrap", token=wrapped, expect=(400, 403))
        assert "secret_id" not in str(body)


def test_a_wrapping_token_minted_through_the_active_node_is_found_at_once_through_a_standby(raft_vault, cluster):
    # what a host does with the controller's wrapped secret id: it has no storage index for that mint, so a
    # stale standby's "not valid" is asked again for a moment (a stale answer would read as interception)
    leader = cluster.leader()
    standby = cluster.standbys()[0]
    # a standby restarted a moment ago is still replaying the log when it starts to answer reads
    cluster.restart(standby)
    raft_vault.use(leader)
    expected = vault.secret_id_path(BOOTSTRAP_MOUNT, APPROLE_NAME)
    for _round in range(LOOKUP_ROUNDS):
        wrapped = raft_vault.mint_wrapped()
        client = vault.VaultClient(standby.url, ca_cert=raft_vault.ca_cert, timeout=10, retries=0)
        try:
            assert vault.lookup_creation_path(client, wrapped) == expected
        finally:
            client.close()


# A standby serves reads from its own copy of the storage, which trails the active node (by 50-100 ms on
# a loopback cluster, and for the whole election when the active node dies before telling the followers
# what it committed). Without the storage index (X-Vault-Index, OpenBao 2.7+) the host would take a stale
# standby's "invalid secret id" as final and mark its only secret id spent.
def test_a_standby_that_missed_the_last_writes_does_not_spend_the_secret_id(raft_vault, cluster, host_dir):
    leader = cluster.leader()
    lagging, other = cluster.standbys()[:2]
    bootstrap_host(raft_vault, host_dir, url=leader.url)
    os.kill(lagging.pid(), signal.SIGSTOP)
    try:
        # the next secret id is written through the active node while the lagging standby sleeps ...
        result = issuance.ensure_certificate(host_params(raft_vault, host_dir, url=leader.url, force=True))
        assert result["issued"] and result["secret_id_rotated"], result
        # ... and the active node dies before the lagging standby hears of it
        cluster.kill(leader)
    finally:
        os.kill(lagging.pid(), signal.SIGCONT)
    serial, failures = _serial(host_dir), []
    for _attempt in range(MAX_FAILED_ATTEMPTS):
        try:
            result = issuance.ensure_certificate(host_params(raft_vault, host_dir, url=[lagging.url, other.url],
                                                             force=True, retries=1, timeout=10))
        except SecretIdRejected as exc:
            pytest.fail("the stale standby's answer spent the secret id: %s" % exc.message)
        except MinibusError as exc:  # no active node yet: the election is still running
            failures.append(exc.message)
            assert store_record(host_dir)["state"] == "ready", (exc.message, store_record(host_dir))
            time.sleep(PAUSE_AFTER_FAILURE)
        else:
            break
    else:
        pytest.fail("no renewal within %d attempts: %s" % (MAX_FAILED_ATTEMPTS, failures[-3:]))
    assert result["issued"] and result["secret_id_rotated"], result
    assert _serial(host_dir) != serial
    assert store_record(host_dir)["state"] == "ready", store_record(host_dir)
    print("renewed after %d failed attempts during the election (%s)" % (len(failures), "; ".join(sorted(set(failures)))))


def _renew_through_failover(raft_vault, cluster, host_dir, url, victim):
    """Forced renewals with url; the victim is killed after the second. Returns (failed attempts, serials)."""
    serials, failures, after = [_serial(host_dir)], [], 0
    attempt = 0
    while after < RENEWALS_AFTER_FAILOVER:
        if attempt == 2:
            cluster.kill(victim)
        attempt += 1
        try:
            result = issuance.ensure_certificate(host_params(raft_vault, host_dir, url=url, force=True, retries=1,
                                                             timeout=10))
        except MinibusError as exc:
            failures.append(exc.message)
            assert len(failures) <= MAX_FAILED_ATTEMPTS, "still failing after %d attempts: %s" % (
                len(failures), failures[-3:])
            time.sleep(PAUSE_AFTER_FAILURE)
        else:
            assert result["issued"], result
            if attempt > 2:
                after += 1
        # whatever happened, the host holds a matching, unexpired certificate
        serials.append(_serial(host_dir))
    print("failover with url=%s: %d failed attempts (%s)" % (url, len(failures), "; ".join(sorted(set(failures)))))
    # and a secret id for the next run: no attempt during the election spent the stored one for nothing
    assert store_record(host_dir)["state"] == "ready", store_record(host_dir)
    return failures, serials


def test_renewals_through_a_standby_survive_killing_the_active_node(raft_vault, cluster, host_dir):
    victim = cluster.leader()
    survivor = cluster.standbys()[0]
    bootstrap_host(raft_vault, host_dir, url=survivor.url)
    failures, serials = _renew_through_failover(raft_vault, cluster, host_dir, survivor.url, victim)
    new_leader = cluster.wait_leader(not_node=victim)
    assert new_leader is not victim
    assert len(set(serials)) >= 2 + RENEWALS_AFTER_FAILOVER, serials


@needs_url_lists
def test_renewals_with_every_node_listed_survive_killing_the_active_node(raft_vault, cluster, host_dir):
    victim = cluster.leader()
    # the active node first: after the kill every attempt starts with a dead address
    urls = [victim.url] + [n.url for n in cluster.nodes if n is not victim]
    bootstrap_host(raft_vault, host_dir, url=urls)
    failures, serials = _renew_through_failover(raft_vault, cluster, host_dir, urls, victim)
    assert cluster.wait_leader(not_node=victim) is not victim
    assert len(set(serials)) >= 2 + RENEWALS_AFTER_FAILOVER, serials


@needs_url_lists
def test_a_sealed_node_listed_first_is_skipped(raft_vault, cluster, host_dir):
    standby = cluster.standbys()[0]
    cluster.seal(standby)
    urls = [standby.url] + [n.url for n in cluster.nodes if n is not standby]
    bootstrap_host(raft_vault, host_dir, url=urls)
    serial = _serial(host_dir)
    result = issuance.ensure_certificate(host_params(raft_vault, host_dir, url=urls, force=True))
    assert result["issued"], result
    assert _serial(host_dir) != serial
    assert (standby.health() or {}).get("sealed") is True
