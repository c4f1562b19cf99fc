# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Fixtures of the reliability tests: real OpenBao (labs/vault.py), real files and real processes.

The session fixture ``vault`` starts a dev OpenBao over HTTPS (labs.vault.DevBao, with the file audit
device in clear, ``log_raw``: the leak scan recovers every secret Vault handed out from the raw audit
log). Every client here trusts the lab's CA (``vault.ca_cert``) the way a user would: ``ca_cert`` in
module/renewer options, ``minibus_vault_ca_cert`` for the bootstrap, ``BAO_CACERT`` for the CLI. It
is configured with playbooks/vault_bootstrap.yml and given a broker token (``bao token create
-policy=minibus-broker``), as tests/integration/run.sh does.

The helpers the test files use live in labs/ (labs/hosts.py, labs/vault.py, labs/rsyslog.py,
labs/senders.py); test files import them from there, never from this file.
"""

from __future__ import absolute_import, division, print_function

import pytest

# labs.hosts makes ansible_collections.minibus.pki importable for every test file
import labs.hosts  # noqa: F401  pylint: disable=unused-import
from labs.fake_vault import FakeVault
from labs.vault import bootstrapped_raft, bootstrapped_vault


@pytest.fixture(scope="session")
def vault():
    with bootstrapped_vault("minibus-reliability-bao-") as server:
        yield server


@pytest.fixture(scope="module")
def raft_vault():
    """labs.vault.RaftBao's 3-node cluster, bootstrapped; a test that kills or seals a node brings it back."""
    with bootstrapped_raft("minibus-reliability-raft-") as server:
        yield server


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """A misbehaving Vault of its own over HTTPS (labs/fake_vault.py); set its route per test."""
    server = FakeVault(str(tmp_path_factory.mktemp("fake-vault")))
    yield server
    server.stop()


@pytest.fixture
def host_dir(tmp_path):
    d = tmp_path / "host"
    d.mkdir()
    return str(d)
