# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import json
import os

import pytest

pytest.importorskip("hvac")

from ansible_collections.minibus.pki.plugins.module_utils import renewer
from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError
from ansible_collections.minibus.pki.plugins.module_utils.files import CertStore
from ansible_collections.minibus.pki.plugins.module_utils.renewer_config import MAX_CONFIG_BYTES

from pki_test_helpers import key_pem, make_cert, new_key


def _write(tmp_path, config):
    path = tmp_path / "renewer.json"
    path.write_text(json.dumps(config))
    return str(path)


def _base_config(tmp_path):
    return {"url": "http://127.0.0.1:9", "allow_insecure_http": True, "role_id": "minibus/csr", "approle_name": "minibus-csr",
            "common_name": "host.example.org", "cert_path": str(tmp_path / "tls" / "host.crt"),
            "key_path": str(tmp_path / "tls" / "host.key")}


def test_load_config_defaults(tmp_path):
    params = renewer.load_config(_write(tmp_path, _base_config(tmp_path)))
    assert params["common_name"] == "host.example.org"
    assert params["ttl"] == "24h" and params["key_type"] == "ec" and params["retries"] == 3
    assert params["auth_mount_point"] == "approle" and params["token"] is None


def test_load_config_rejects_unknown_keys(tmp_path):
    config = dict(_base_config(tmp_path), colour="blue", vault_password="x")
    with pytest.raises(MinibusError) as info:
        renewer.load_config(_write(tmp_path, config))
    assert "unknown keys colour, vault_password" in info.value.message
    assert "\n" not in info.value.message


@pytest.mark.parametrize("name", ["token", "secret_id", "secret_id_wrapping_token"])
def test_load_config_rejects_secrets(tmp_path, name):
    secret = "hvs.do-not-show-this"
    with pytest.raises(MinibusError) as info:
        renewer.load_config(_write(tmp_path, dict(_base_config(tmp_path), **{name: secret})))
    assert "must not hold %s" % name in info.value.message
    assert secret not in info.value.message


def test_load_config_not_json(tmp_path):
    path = tmp_path / "renewer.json"
    path.write_text("{oops")
    with pytest.raises(MinibusError) as info:
        renewer.load_config(str(path))
    assert "not valid JSON" in info.value.message


def test_main_nothing_to_do_without_network(tmp_path, capsys):
    config = _base_config(tmp_path)
    key = new_key("ec")
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = make_cert(key, not_before=now - datetime.timedelta(hours=1), not_after=now + datetime.timedelta(hours=24))
    CertStore(config["cert_path"], config["key_path"]).install({"cert": cert, "key": key_pem(key)}, "01")
    code = renewer.main(["--config", _write(tmp_path, config)], environ={})
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.startswith("minibus-certs-renew: nothing to do: the certificate is valid for ")
    assert out.count("\n") == 1 and err == ""


def test_main_check_is_critical_without_certificate(tmp_path, capsys):
    config = _base_config(tmp_path)
    code = renewer.main(["--config", _write(tmp_path, config), "--check"], environ={})
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out.startswith("MINIBUS CERT CRITICAL - no certificate installed | seconds_left=0;;;0")


def _install_cert(config, hours_left, lifetime_hours=24):
    key = new_key("ec")
    now = datetime.datetime.now(datetime.timezone.utc)
    not_after = now + datetime.timedelta(hours=hours_left)
    cert = make_cert(key, not_before=not_after - datetime.timedelta(hours=lifetime_hours), not_after=not_after)
    CertStore(config["cert_path"], config["key_path"]).install({"cert": cert, "key": key_pem(key)}, "0a")


@pytest.mark.parametrize("hours_left, code, verdict", [(20, 0, "OK"), (2, 1, "WARNING")])
def test_main_check_codes(tmp_path, capsys, hours_left, code, verdict):
    config = _base_config(tmp_path)
    _install_cert(config, hours_left)
    assert renewer.main(["--config", _write(tmp_path, config), "--check"], environ={}) == code
    out, _err = capsys.readouterr()
    assert out.startswith("MINIBUS CERT %s - " % verdict)


def test_failed_run_shows_in_status_check_and_metrics_then_clears(tmp_path, capsys):
    """A run that cannot reach Vault is recorded; a later good run clears the failure."""
    config = dict(_base_config(tmp_path), retries=0, timeout=2)
    config_path = _write(tmp_path, config)
    _install_cert(config, hours_left=2)  # due, and 127.0.0.1:9 refuses connections
    assert renewer.main(["--config", config_path], environ={"MINIBUS_CSR_SECRET_ID": "s.not-a-real-one"}) == 1
    capsys.readouterr()
    assert renewer.main(["--config", config_path, "--check"], environ={}) == 2
    out, _err = capsys.readouterr()
    assert out.startswith("MINIBUS CERT CRITICAL - the last renewal attempt failed: Could not connect to Vault")
    assert "s.not-a-real-one" not in out
    assert renewer.main(["--config", config_path, "--status", "--json"], environ={}) == 0
    record = json.loads(capsys.readouterr()[0])
    assert record["last_result"] == "failed" and record["failures_total"] == 1 and record["code"] == 2
    metrics = (tmp_path / "tls" / "minibus_certs.prom").read_text()
    assert 'minibus_certs_last_run_success{common_name="host.example.org"} 0' in metrics
    assert 'minibus_certs_failures_total{common_name="host.example.org"} 1' in metrics

    _install_cert(config, hours_left=20)  # as if a renewal had succeeded meanwhile
    assert renewer.main(["--config", config_path], environ={}) == 0
    capsys.readouterr()
    assert renewer.main(["--config", config_path, "--check"], environ={}) == 0
    assert capsys.readouterr()[0].startswith("MINIBUS CERT OK - certificate valid until ")
    metrics = (tmp_path / "tls" / "minibus_certs.prom").read_text()
    assert 'minibus_certs_last_run_success{common_name="host.example.org"} 1' in metrics
    assert 'minibus_certs_status{common_name="host.example.org"} 0' in metrics
    assert renewer.main(["--config", config_path, "--status"], environ={}) == 0
    table = capsys.readouterr()[0]
    assert table.splitlines()[0].startswith("status ") and "OK: certificate valid until" in table
    assert "failures      1" in table


def test_forced_run_records_the_certificate_as_not_due(tmp_path, capsys):
    """--force asks for a renewal; the health record must still say the certificate itself is not due."""
    config = dict(_base_config(tmp_path), retries=0, timeout=2)
    config_path = _write(tmp_path, config)
    _install_cert(config, hours_left=20)
    assert renewer.main(["--config", config_path, "--force"], environ={"MINIBUS_CSR_SECRET_ID": "s.x"}) == 1
    capsys.readouterr()
    metrics = (tmp_path / "tls" / "minibus_certs.prom").read_text()
    assert 'minibus_certs_renewal_due{common_name="host.example.org"} 0' in metrics
    assert 'minibus_certs_last_run_success{common_name="host.example.org"} 0' in metrics
    assert 'minibus_certs_status{common_name="host.example.org"} 2' in metrics


def test_main_bad_config_path(tmp_path, capsys):
    code = renewer.main(["--config", str(tmp_path / "missing.json")], environ={})
    out, err = capsys.readouterr()
    assert code == 1
    assert out == ""
    assert err.startswith("minibus-certs-renew: failed: Could not read the renewer config")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_main_secret_in_config_fails_cleanly(tmp_path, capsys):
    secret = "hvs.secret-in-config"
    code = renewer.main(["--config", _write(tmp_path, dict(_base_config(tmp_path), token=secret))], environ={})
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert "must not hold token" in err and secret not in err and err.count("\n") == 1


def test_timeout_and_retries_as_strings_are_numbers_not_a_type_error(tmp_path, capsys):
    # A regression: "-e minibus_certs_vault_timeout=30" reached renewer.json as "30": "unexpected TypeError".
    from ansible_collections.minibus.pki.plugins.module_utils import secret_store
    store = str(tmp_path / "secret-id.json")
    secret_store.save(store, "a-stored-secret-id")
    config = dict(_base_config(tmp_path), timeout="30", retries="0", secret_id_store=store)
    code = renewer.main(["--config", _write(tmp_path, config)], environ={})
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("minibus-certs-renew: failed: Could not connect to Vault at http://127.0.0.1:9")
    assert "unexpected" not in err and "a-stored-secret-id" not in err


def test_junk_timeout_is_one_sentence(tmp_path, capsys):
    code = renewer.main(["--config", _write(tmp_path, dict(_base_config(tmp_path), timeout="soon"))], environ={})
    out, err = capsys.readouterr()
    assert code == 1
    assert err == "minibus-certs-renew: failed: timeout 'soon' is not a whole number: give it like 30.\n"


@pytest.mark.parametrize("extra,line", [
    ({}, "survives a Vault outage of up to 6h28m"),
    ({"timer_on_calendar": "hourly", "timer_randomized_delay": "15min"}, "survives a Vault outage of up to 5h28m"),
    ({"ttl": "24h", "renew_before": "1h", "timer_on_calendar": "hourly"}, "survives no Vault outage: renew_before"),
    ({"timer_on_calendar": "Mon *:00"}, "unknown (OnCalendar 'Mon *:00' is not a form"),
])
def test_status_states_the_outage_the_configuration_survives(tmp_path, capsys, extra, line):
    config = dict(_base_config(tmp_path), **extra)
    config_path = _write(tmp_path, config)
    _install_cert(config, hours_left=20)
    assert renewer.main(["--config", config_path, "--status"], environ={}) == 0
    table = capsys.readouterr()[0]
    assert sum(1 for row in table.splitlines() if row.startswith("vault outage  ") and line in row) == 1, table
    assert renewer.main(["--config", config_path, "--status", "--json"], environ={}) == 0
    record = json.loads(capsys.readouterr()[0])
    assert record["outage_budget"].startswith(line)
    assert (record["outage_budget_seconds"] is None) == line.startswith("unknown")
    # a run (nothing due) writes the metrics: the budget is a gauge unless it is unknown
    assert renewer.main(["--config", config_path], environ={}) == 0
    metrics = (tmp_path / "tls" / "minibus_certs.prom").read_text()
    gauge = 'minibus_certs_outage_budget_seconds{common_name="host.example.org"} %s' % record["outage_budget_seconds"]
    assert (gauge in metrics) == (record["outage_budget_seconds"] is not None), metrics


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.parametrize("args", [[], ["--force"], ["--status", "--json"], ["--check"]])
def test_root_without_owner_refuses_a_directory_another_account_owns(tmp_path, capsys, args):
    """Root reads only its config: a state directory of another uid is not root's to work in."""
    config = _base_config(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    os.chown(str(state), 65534, 65534)
    (state / "renewer-state.json").symlink_to("/etc/shadow")
    config["secret_id_store"] = str(state / "secret-id.json")
    code = renewer.main(["--config", _write(tmp_path, config)] + args, environ={})
    out, err = capsys.readouterr()
    assert code == (2 if "--check" in args else 1) and out == ""
    assert err.count("\n") == 1 and "sudo -u" in err and "or set owner in" in err and str(state) in err, err
    assert os.path.islink(str(state / "renewer-state.json"))  # nothing was done


def test_with_a_publish_section_the_account_writes_no_textfile_of_its_own(tmp_path, capsys):
    """Root renders the metrics from the checked set (publish.py): the account's copy would be read by nobody."""
    config = dict(_base_config(tmp_path), publish={"dir": "/nonexistent/published", "key_usage": "clientAuth"})
    config_path = _write(tmp_path, config)
    _install_cert(config, hours_left=20)
    assert renewer.main(["--config", config_path], environ={}) == 0
    capsys.readouterr()
    assert (tmp_path / "tls" / "renewer-state.json").exists()  # the run is still recorded
    assert not (tmp_path / "tls" / "minibus_certs.prom").exists()


def test_load_config_missing_is_one_sentence(tmp_path):
    with pytest.raises(MinibusError) as info:
        renewer.load_config(str(tmp_path / "absent.json"))
    assert "nothing is there" in info.value.message and "\n" not in info.value.message


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "3"])
def test_load_config_rejects_a_non_object(tmp_path, content):
    path = tmp_path / "renewer.json"
    path.write_text(content)
    with pytest.raises(MinibusError) as info:
        renewer.load_config(str(path))
    assert "not a JSON object" in info.value.message


def test_load_config_refuses_a_fifo_a_link_and_an_oversized_file_without_waiting(tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(str(fifo))  # nobody ever writes: an open or read that waits would hang the test
    link = tmp_path / "link.json"
    link.symlink_to(_write(tmp_path, _base_config(tmp_path)))
    big = tmp_path / "big.json"
    big.write_text('{"common_name": "%s"}' % ("x" * (MAX_CONFIG_BYTES + 1)))
    for path, words in ((fifo, "not a regular file"), (link, "symbolic link"), (big, "larger than")):
        with pytest.raises(MinibusError) as info:
            renewer.load_config(str(path))
        assert words in info.value.message, info.value.message


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
@pytest.mark.parametrize("uid, mode", [(65534, 0o644), (0, 0o664), (0, 0o646)])
def test_root_refuses_a_config_another_account_can_change(tmp_path, capsys, uid, mode):
    """The config names the files root touches and as whom: root trusts only a file root alone can change."""
    config = _base_config(tmp_path)
    config["cert_path"] = "/etc/shadow"
    path = _write(tmp_path, config)
    os.chown(path, uid, 0)
    os.chmod(path, mode)
    code = renewer.main(["--config", path, "--status"], environ={})
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "root does not trust it" in err and path in err, err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_refuses_a_config_in_a_directory_another_account_owns(tmp_path, capsys):
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    path = _write(conf_dir, _base_config(tmp_path))
    os.chown(str(conf_dir), 65534, 65534)  # the account could swap the file for its own
    code = renewer.main(["--config", path, "--status"], environ={})
    err = capsys.readouterr().err
    assert code == 1 and "which another account can change" in err and str(conf_dir) in err, err


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_root_reads_a_root_only_config(tmp_path):
    path = _write(tmp_path, _base_config(tmp_path))
    os.chmod(path, 0o640)
    assert renewer.load_config(path)["common_name"] == "host.example.org"
