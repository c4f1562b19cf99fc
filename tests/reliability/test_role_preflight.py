# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The role's preflight refuses layouts where root would write inside a directory the renewal account owns."""

from __future__ import absolute_import, division, print_function

import os
import subprocess
import sys

import pytest
import yaml

from labs.hosts import BIN_DIR, clean_env

SENTENCE = "none of root's directories"


def _preflight(tmp_path, **extra):
    play = tmp_path / "preflight.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"ansible.builtin.include_role": {"name": "minibus.pki.minibus_certs", "tasks_from": "preflight"},
                   "vars": dict({"minibus_certs_vault_url": "https://vault.example.org:8200",
                                 "minibus_certs_rsyslog_role": "client",
                                 "minibus_certs_rsyslog_server_address": "logs.example.org",
                                 # gather_facts: false, so no FQDN to default to
                                 "minibus_certs_common_name": "host1.example.org",
                                 "minibus_certs_trust_anchor": "-----BEGIN CERTIFICATE-----\n..."}, **extra)}]}]))
    return subprocess.run(
        [os.path.join(BIN_DIR, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
         "-e", "ansible_python_interpreter=%s" % sys.executable],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False,
        timeout=120)


@pytest.mark.parametrize("extra", [
    {"minibus_certs_metrics_textfile_dir": "/var/lib/minibus-certs/state"},
    {"minibus_certs_metrics_textfile_dir": "/var/lib/minibus-certs/tls/metrics/"},
    {"__minibus_certs_facts_dir": "/var/lib/minibus-certs/state/facts.d"},
    # the units' directory (the reload units are written and removed there) below the account's state
    {"minibus_certs_state_dir": "/etc/systemd"},
])
def test_root_directory_inside_an_account_directory_is_refused(tmp_path, extra):
    out = _preflight(tmp_path, **extra)
    assert out.returncode != 0 and SENTENCE in out.stdout and "Traceback" not in out.stdout, out.stdout


def test_separate_directories_pass(tmp_path):
    out = _preflight(tmp_path, minibus_certs_metrics_textfile_dir="/var/lib/prometheus/node-exporter")
    assert out.returncode == 0, out.stdout


def test_an_outage_budget_the_configuration_cannot_meet_is_refused(tmp_path):
    out = _preflight(tmp_path, minibus_certs_outage_budget="8h", minibus_certs_timer_on_calendar="hourly")
    assert out.returncode != 0 and "Traceback" not in out.stdout, out.stdout
    assert ("minibus_certs_outage_budget is 8h but this configuration survives a Vault outage of up to 5h28m "
            "(minibus_certs_ttl 24h, minibus_certs_renew_before 8h00m, minibus_certs_timer_on_calendar hourly, "
            "minibus_certs_timer_randomized_delay 15min") in " ".join(out.stdout.split()), out.stdout
    assert "raise minibus_certs_renew_before to at least 10h32m" in out.stdout


@pytest.mark.parametrize("extra", [
    {},  # unset: no check
    {"minibus_certs_outage_budget": "6h"},
    {"minibus_certs_outage_budget": "8h", "minibus_certs_renew_before": "11h", "minibus_certs_timer_on_calendar": "hourly"},
])
def test_an_outage_budget_the_configuration_meets_passes(tmp_path, extra):
    out = _preflight(tmp_path, **extra)
    assert out.returncode == 0, out.stdout


def test_an_outage_budget_with_a_timer_whose_period_is_unknown_says_so(tmp_path):
    out = _preflight(tmp_path, minibus_certs_outage_budget="6h", minibus_certs_timer_on_calendar="Mon *:00")
    assert out.returncode != 0 and "Traceback" not in out.stdout, out.stdout
    assert "minibus_certs_timer_on_calendar 'Mon *:00' is not a form whose period can be computed" in out.stdout


@pytest.mark.parametrize("url", [["https://v1.example.org:8200", "https://v2.example.org:8200"],
                                 "https://v1.example.org:8200, https://v2.example.org:8200"])
def test_several_vault_addresses_pass(tmp_path, url):
    out = _preflight(tmp_path, minibus_certs_vault_url=url)
    assert out.returncode == 0, out.stdout[-3000:]


@pytest.mark.parametrize("url,sentence", [
    (["https://v1.example.org:8200", "http://v2.example.org:8200"], "plain http:// address (http://v2.example.org:8200)"),
    (["https://v1.example.org:8200", "v2.example.org:8200"], "must be the Vault/OpenBao URL"),
])
def test_a_bad_address_among_several_is_refused(tmp_path, url, sentence):
    out = _preflight(tmp_path, minibus_certs_vault_url=url)
    assert out.returncode != 0 and sentence in out.stdout, out.stdout[-3000:]


def _role_without_facts(tmp_path, **extra):
    """The whole role (main entry point, so with argument validation) in a play with gather_facts: false.

    A ttl of 30h stops the run at the preflight, after argument validation and before any package or file.
    """
    play = tmp_path / "role.yml"
    play.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False,
        "roles": [{"role": "minibus.pki.minibus_certs",
                   "vars": dict({"minibus_certs_vault_url": "https://vault.example.org:8200",
                                 "minibus_certs_rsyslog_role": "client",
                                 "minibus_certs_rsyslog_server_address": "logs.example.org",
                                 "minibus_certs_trust_anchor": "-----BEGIN CERTIFICATE-----\n..."}, **extra)}]}]))
    return subprocess.run(
        [os.path.join(BIN_DIR, "ansible-playbook"), "-i", "localhost,", "-c", "local", str(play),
         "-e", "ansible_python_interpreter=%s" % sys.executable],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, check=False,
        timeout=180)


def test_gather_facts_false_with_a_common_name_passes_argument_validation(tmp_path):
    out = _role_without_facts(tmp_path, minibus_certs_common_name="host1.example.org", minibus_certs_ttl="30h")
    assert "Validating arguments against arg spec" in out.stdout, out.stdout
    assert "fqdn" not in out.stdout and "Traceback" not in out.stdout, out.stdout
    # It got as far as the preflight: the ttl check is what stopped it.
    assert out.returncode != 0 and "minibus_certs_ttl must be a duration" in out.stdout, out.stdout


def test_gather_facts_false_without_a_common_name_says_so(tmp_path):
    out = _role_without_facts(tmp_path, minibus_certs_ttl="30h")
    assert out.returncode != 0, out.stdout
    assert "minibus_certs_common_name is empty" in out.stdout and "gather_facts: false" in out.stdout, out.stdout
    assert "Traceback" not in out.stdout and "has no attribute" not in out.stdout, out.stdout
