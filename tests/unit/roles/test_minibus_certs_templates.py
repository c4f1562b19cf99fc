# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The minibus_certs role's templates, rendered by Ansible's own templating with the role's defaults.

renewer.json: numbers given as strings (-e minibus_certs_vault_timeout=30, an AWX survey) must come out as
integers, or every renewal fails. minibus-tls.conf (one template per transport and side): the names
rsyslog 8.2302 knows, checked with the real `rsyslogd -N1`, the pinned root as CA file and the full
chain as certificate file.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from labs.role_template import ROLE, render


def _render(template, **overrides):
    return render(template, **dict(dict(
        minibus_certs_vault_url="https://vault.example.org:8200", minibus_certs_rsyslog_role="client",
        minibus_certs_rsyslog_server_address="logs.example.org", minibus_certs_rsyslog_permitted_peers=["logs.example.org"],
        minibus_certs_trust_anchor="-----BEGIN CERTIFICATE-----\n...", ansible_managed="managed",
        ansible_facts={"fqdn": "host.example.org"}), **overrides))


@pytest.mark.parametrize("timeout, retries", [("30", "2"), (30, 2)])
def test_renewer_config_numbers_are_integers(timeout, retries):
    config = json.loads(_render("renewer.json.j2", minibus_certs_vault_timeout=timeout,
                                minibus_certs_vault_retries=retries))
    assert config["timeout"] == 30 and config["retries"] == 2


def test_renewer_config_leaves_unset_numbers_out_and_pins_the_root():
    config = json.loads(_render("renewer.json.j2"))
    assert "timeout" not in config and "retries" not in config
    assert config["trust_anchor_path"] == "/etc/minibus-certs/trust-anchor.pem"
    assert config["extended_key_usage"] == ["clientAuth"]  # every answer the renewer gets is checked for it
    assert config["fullchain_path"] == "/var/lib/minibus-certs/tls/fullchain.pem"
    assert config["secret_id_store"] == "/var/lib/minibus-certs/state/secret-id.json"
    # nothing in the account's directory triggers root: no stamp; root publishes rsyslog's copies
    assert "stamp_path" not in config
    assert config["publish"] == {"dir": "/var/lib/minibus-certs/published", "key_usage": "clientAuth",
                                 "restart_rsyslog": False, "owner": "minibus-certs", "group": "minibus-certs"}


def test_renewer_config_publish_section_of_a_tcp_log_server_with_metrics():
    config = json.loads(_render("renewer.json.j2", minibus_certs_rsyslog_role="server", minibus_certs_rsyslog_transport="tcp",
                                minibus_certs_metrics_textfile_dir="/var/lib/prometheus/node-exporter/"))
    assert config["publish"]["key_usage"] == "serverAuth" and config["publish"]["restart_rsyslog"] is True
    assert config["extended_key_usage"] == ["serverAuth"]
    assert config["publish"]["metrics_path"] == "/var/lib/prometheus/node-exporter/minibus_certs.prom"
    assert "ca_path" not in config and "allow_insecure_http" not in config


def test_renewer_config_carries_the_timer_for_the_outage_budget(tmp_path):
    """The renewer states the outage budget of the timer the role installs (--status), from renewer.json."""
    from ansible_collections.minibus.pki.plugins.module_utils import renewer
    rendered = _render("renewer.json.j2", minibus_certs_timer_on_calendar="hourly",
                       minibus_certs_timer_randomized_delay="10min")
    config = json.loads(rendered)
    assert config["timer_on_calendar"] == "hourly" and config["timer_randomized_delay"] == "10min"
    path = tmp_path / "renewer.json"
    path.write_text(rendered)
    params = renewer.load_config(str(path))
    assert renewer._outage_budget(params) == {  # pylint: disable=protected-access
        "outage_budget_seconds": 8 * 3600 - 2 * (3600 + 600 + 60),
        "outage_budget": "survives a Vault outage of up to 5h38m"}


def _self_signed(directory):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, u"root")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    paths = {}
    for name, data in (("fullchain.pem", cert.public_bytes(serialization.Encoding.PEM)),
                       ("trust-anchor.pem", cert.public_bytes(serialization.Encoding.PEM)),
                       ("key.pem", key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))):
        paths[name] = os.path.join(directory, name)
        with open(paths[name], "wb") as handle:
            handle.write(data)
    return paths


@pytest.mark.skipif(shutil.which("rsyslogd") is None, reason="rsyslogd is not installed (apt: rsyslog rsyslog-gnutls rsyslog-relp)")
@pytest.mark.parametrize("transport", ["relp", "tcp"])
@pytest.mark.parametrize("role", ["server", "client"])
def test_rsyslog_snippet_is_valid_and_hardened(tmp_path, role, transport):
    paths = _self_signed(str(tmp_path))
    # rsyslog names root's published copies only (minibus_certs_tls_dir is the account's, unused here)
    text = _render("minibus-tls.conf.j2", minibus_certs_rsyslog_role=role, minibus_certs_published_dir=str(tmp_path),
                   minibus_certs_tls_dir="/nonexistent/account-store",
                   minibus_certs_rsyslog_transport=transport,
                   __minibus_certs_trust_anchor_path=paths["trust-anchor.pem"],
                   minibus_certs_rsyslog_remote_log=str(tmp_path / "remote.log"))
    if transport == "tcp":
        assert 'DefaultNetstreamDriverCAFile="%s"' % paths["trust-anchor.pem"] in text
        assert 'DefaultNetstreamDriverCertFile="%s"' % paths["fullchain.pem"] in text
        assert 'StreamDriver.PermitExpiredCerts="off"' in text
        assert "gnutlsPriorityString=" in text and "+VERS-TLS1.2" in text
        assert "relp" not in text.split("transport tcp")[1]
    else:
        assert 'tls.cacert="%s"' % paths["trust-anchor.pem"] in text
        assert 'tls.mycert="%s"' % paths["fullchain.pem"] in text
        # OpenSSL: librelp checks the peer's extended key usage only with it (docs/design.md)
        assert 'tls="on"' in text and 'tls.authmode="name"' in text and 'tls.tlslib="openssl"' in text
        assert 'tls.tlscfgcmd="MinProtocol=TLSv1.2;' in text and "prioritystring" not in text
        assert ("imrelp" if role == "server" else "omrelp") in text and "gtls" not in text
    assert "/nonexistent/account-store" not in text
    conf = tmp_path / "snippet.conf"
    conf.write_text(text)
    check = subprocess.run(["rsyslogd", "-N1", "-f", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, check=False)
    assert check.returncode == 0, check.stdout
    assert "not known" not in check.stdout


@pytest.mark.parametrize("transport", ["relp", "tcp"])
@pytest.mark.parametrize("role", ["server", "client"])
def test_rsyslog_snippet_is_one_template_per_transport_and_side(role, transport):
    """tasks/rsyslog.yml installs templates/minibus-tls-<transport>-<side>.conf.j2, which holds only its own kind."""
    text = _render("minibus-tls.conf.j2", minibus_certs_rsyslog_role=role, minibus_certs_rsyslog_transport=transport)
    own = os.path.join(ROLE, "templates", "minibus-tls-%s-%s.conf.j2" % (transport, role))
    assert os.path.isfile(own)
    assert "# minibus.pki: rsyslog mutual TLS (%s, transport %s)." % (role, transport) in text
    inputs = {"relp": 'type="imrelp"', "tcp": 'input(type="imtcp"'}
    forwards = {"relp": 'type="omrelp"', "tcp": 'type="omfwd"'}
    other = "tcp" if transport == "relp" else "relp"
    assert (inputs[transport] in text) == (role == "server")
    assert (forwards[transport] in text) == (role == "client")
    assert inputs[other] not in text and forwards[other] not in text


@pytest.mark.skipif(shutil.which("rsyslogd") is None, reason="rsyslogd is not installed (apt: rsyslog rsyslog-gnutls rsyslog-relp)")
def test_intake_snippet_reads_the_journal_with_a_cursor_and_no_rate_limit(tmp_path):
    """minibus_certs_rsyslog_intake=journal: imjournal with a persisted state file, imjournal's own limit off."""
    text = _render("minibus-intake-journal.conf.j2")
    assert 'load="imjournal"' in text
    assert 'StateFile="/var/spool/rsyslog/minibus-imjournal.state"' in text
    assert 'Ratelimit.Interval="0"' in text and 'IgnorePreviousMessages="on"' in text
    assert 'PersistStateInterval="1000"' in text
    assert 'UsePid="syslog"' in text  # tags as the application wrote them, as with the socket
    assert 'if $inputname == "imjournal" and $syslogfacility-text == "kern" then stop' in text
    # Not valid alone (an input, no action): the role checks it within the complete configuration.
    conf = tmp_path / "intake.conf"
    conf.write_text(text + '\naction(type="omfile" file="%s")\n' % (tmp_path / "out.log"))
    check = subprocess.run(["rsyslogd", "-N1", "-f", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, check=False)
    assert check.returncode == 0, check.stdout
    assert "not known" not in check.stdout


@pytest.mark.parametrize("intake, forward", [("journal", "no"), ("socket", "yes")])
def test_journald_dropin_sets_the_rate_limit_and_forwards_only_to_the_socket_intake(intake, forward):
    text = _render("minibus-journald.conf.j2", minibus_certs_rsyslog_intake=intake)
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert lines == ["[Journal]", "RateLimitIntervalSec=30s", "RateLimitBurst=60000", "ForwardToSyslog=%s" % forward]
