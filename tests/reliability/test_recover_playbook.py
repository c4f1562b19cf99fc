# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""minibus.pki.recover (playbooks/recover.yml) against a real OpenBao and the role's real local fact.

Two hosts (local connections, each with its own facts.d and store, issued by the core as the role's
first run does): "healthy", and "stale", whose secret id (a short secret_id_ttl on the AppRole role)
and certificate (a short ttl) both expired, as on a host that was offline longer than its secret id's
TTL. The scheduled run gathers only the local fact, sends the stale host into the usual site plays
and leaves the healthy one alone: no role task, no file changed, and not one Vault request (OpenBao's
audit log). The stale host's role run is made to stop at its preflight (an empty common name), before
any change on this machine (no systemd or rsyslog of its own here): what is proven here is that it is
selected; its renewer alone cannot recover it; after the broker's wrapped secret id (the role's
certificate step, done here by the core as the module does) the next scheduled run leaves both alone.
"""

from __future__ import absolute_import, division, print_function

import json
import os
import shutil
import subprocess
import sys
import time

import jinja2
import pytest
import yaml

from labs.hosts import (APPROLE_NAME, BIN_DIR, COLLECTIONS_DIR, MODULE_UTILS, REPO_ROOT, bootstrap_host, clean_env,
                        run_renewer, store_record, tree_digest, write_renewer_config)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the local fact runs as root (as at fact gathering)")

TEMPLATE = os.path.join(REPO_ROOT, "roles", "minibus_certs", "templates", "minibus_certs.fact.j2")
SHORT_TTL = 3


def _install_fact(vault, directory, **config):
    """The role's fact template, rendered against a library laid out as the role installs it."""
    lib = os.path.join(directory, "lib")
    shutil.copytree(MODULE_UTILS, os.path.join(lib, "minibus_pki"), ignore=shutil.ignore_patterns("__pycache__"))
    facts = os.path.join(directory, "facts.d")
    os.mkdir(facts)
    text = jinja2.Template(open(TEMPLATE).read()).render(
        ansible_managed="test", __minibus_certs_lib_dir=lib,
        __minibus_certs_renewer_config=write_renewer_config(vault, directory, **config),
        minibus_certs_user="root", minibus_certs_group="root")
    fact = os.path.join(facts, "minibus_certs.fact")
    with open(fact, "w") as handle:  # this interpreter: the one with the core's libraries
        handle.write("#!%s -IB\n" % sys.executable + text.split("\n", 1)[1])
    os.chmod(fact, 0o755)
    return facts


def _requests(vault):
    return len([e for e in vault.audit_entries() if e.get("type") == "request"])


@pytest.fixture
def hosts(vault, tmp_path):
    healthy, stale = str(tmp_path / "healthy"), str(tmp_path / "stale")
    os.mkdir(healthy)
    os.mkdir(stale)
    bootstrap_host(vault, healthy, common_name="healthy.minibus.test", alt_names=[])
    role = "auth/approle/role/%s" % APPROLE_NAME
    before = vault.api("GET", role)["data"]["secret_id_ttl"]
    vault.api("POST", role, json_body={"secret_id_ttl": "%ds" % SHORT_TTL})
    try:
        bootstrap_host(vault, stale, common_name="stale.minibus.test", alt_names=[], ttl="%ds" % SHORT_TTL)
    finally:
        vault.api("POST", role, json_body={"secret_id_ttl": before})
    facts = {"healthy": _install_fact(vault, healthy, common_name="healthy.minibus.test", alt_names=[]),
             "stale": _install_fact(vault, stale, common_name="stale.minibus.test", alt_names=[],
                                    ttl="%ds" % SHORT_TTL)}
    time.sleep(SHORT_TTL + 2)  # offline for longer than the secret id's TTL and the certificate's lifetime
    return {"healthy": healthy, "stale": stale}, facts


def _recover(tmp_path, facts, **host_vars):
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(yaml.safe_dump({"all": {"children": {"rsyslog_clients": {"hosts": dict(
        (name, dict({"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                     "minibus_recover_fact_path": path}, **host_vars.get(name, {})))
        for name, path in facts.items())}}}}))
    env = clean_env(ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
                    ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_DIR)
    out = subprocess.run([os.path.join(BIN_DIR, "ansible-playbook"), "-i", str(inventory), "minibus.pki.recover",
                          "-e", "minibus_site_become=false", "-e", "minibus_site_renew_broker_token=false"],
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                         check=False, timeout=300, cwd=str(tmp_path))
    try:
        return json.loads(out.stdout), out
    except ValueError:
        raise AssertionError("no JSON from ansible-playbook: %s %s" % (out.stdout[-2000:], out.stderr[-2000:]))


def _hosts_per_play(report):
    return dict((play["play"]["name"], sorted(set(h for task in play["tasks"] for h in task["hosts"])))
                for play in report["plays"])


def test_the_scheduled_run_selects_the_stale_host_and_costs_the_healthy_one_nothing(vault, hosts, tmp_path):
    dirs, facts = hosts
    assert store_record(dirs["stale"])["state"] == "ready"  # ready, but expired: only its expires_at says so
    healthy_before = tree_digest(dirs["healthy"])
    requests_before = _requests(vault)

    # the stale host stops at the role's preflight: it was selected, and nothing on this machine changes
    report, out = _recover(tmp_path, facts, stale={"minibus_certs_common_name": ""})

    plays = _hosts_per_play(report)
    assert plays["Sort the hosts by what their local fact says they need"] == ["healthy", "stale"], plays
    assert plays["Certificates and mutual TLS for the rsyslog servers and clients"] == ["stale"], plays
    stats = report["stats"]
    assert stats["healthy"]["failures"] == 0 and stats["healthy"]["changed"] == 0, stats
    assert stats["stale"]["failures"] == 1 and "common name" in out.stdout.lower(), out.stdout[-3000:]
    assert tree_digest(dirs["healthy"]) == healthy_before
    assert _requests(vault) == requests_before, "the scheduled run sent Vault requests"

    # the renewer alone cannot bring it back: it says the host needs a new secret id
    renewer = run_renewer(os.path.join(dirs["stale"], "renewer.json"))
    assert renewer.returncode != 0 and "secret id" in (renewer.stdout + renewer.stderr), renewer
    # what the role's certificate step does for it (a wrapped secret id from the broker, the module's flow)
    bootstrap_host(vault, dirs["stale"], common_name="stale.minibus.test", alt_names=[])
    write_renewer_config(vault, dirs["stale"], common_name="stale.minibus.test", alt_names=[])  # the usual ttl
    assert store_record(dirs["stale"])["state"] == "ready"
    # and the next scheduled run finds both healthy: no role run, not one Vault request
    requests_before = _requests(vault)
    report, out = _recover(tmp_path, facts)
    assert out.returncode == 0, out.stdout[-3000:]
    plays = _hosts_per_play(report)
    assert not plays.get("Certificates and mutual TLS for the rsyslog servers and clients"), plays
    assert _requests(vault) == requests_before


def test_a_run_where_every_host_is_healthy_costs_no_vault_request_and_runs_no_role(vault, hosts, tmp_path):
    dirs, facts = hosts
    healthy_before = tree_digest(dirs["healthy"])
    requests_before = _requests(vault)
    report, out = _recover(tmp_path, {"healthy": facts["healthy"]})
    assert out.returncode == 0, out.stdout[-3000:]
    plays = _hosts_per_play(report)
    assert plays["Sort the hosts by what their local fact says they need"] == ["healthy"], plays
    assert not plays.get("Certificates and mutual TLS for the rsyslog servers and clients"), plays
    assert tree_digest(dirs["healthy"]) == healthy_before
    assert _requests(vault) == requests_before
