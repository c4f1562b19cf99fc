# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What a real Prometheus sees: the renewer against a real OpenBao, its textfile published as a root-owned
copy into a textfile directory, Debian's node_exporter serving it as the ``prometheus`` account, and
Debian's Prometheus scraping it with the shipped alert rules (their ``for:`` shortened to seconds).

Proves: the series arrive (state set, certificate info naming the issuing CA), the renewal-failing alert
fires while Vault is sealed and clears after a good run, and the textfile scrape error and metrics-missing
alerts fire on a broken or removed file. Waits are bounded polls (a deadline, not a speed assertion).
"""

from __future__ import absolute_import, division, print_function

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time

import pytest
import requests
from cryptography import x509

from labs.hosts import bootstrap_host, free_port, paths, REPO_ROOT, run_renewer, write_renewer_config

NODE_EXPORTER = shutil.which("prometheus-node-exporter")
PROMETHEUS = shutil.which("prometheus")
RULES = os.path.join(REPO_ROOT, "roles", "minibus_certs", "files", "prometheus", "minibus_certs_rules.yml")
WAIT_SECONDS = 90

pytestmark = [
    pytest.mark.skipif(not (NODE_EXPORTER and PROMETHEUS),
                       reason="needs Debian's prometheus and prometheus-node-exporter (tools/os-packages.sh test)"),
    pytest.mark.skipif(os.geteuid() != 0, reason="runs node_exporter as the prometheus account: needs root"),
]


def _start(argv, log_path, user=None):
    log = open(log_path, "w")
    account = pwd.getpwnam(user) if user else None

    def drop():
        if account:
            os.setgid(account.pw_gid)
            os.setgroups([])
            os.setuid(account.pw_uid)

    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=drop, cwd="/")


@pytest.fixture
def monitoring(tmp_path):
    """node_exporter (as prometheus) on a textfile directory, and Prometheus scraping it every second."""
    if not _account_exists("prometheus"):
        pytest.skip("no prometheus account (the Debian package creates it)")
    textfile_dir = tempfile.mkdtemp(prefix="minibus-textfile-")
    os.chmod(textfile_dir, 0o755)
    exporter_port, prometheus_port = free_port(), free_port()
    with open(RULES) as handle:
        rules = re.sub(r"(?m)^(\s+)for: .*$", r"\1for: 2s", handle.read())
    (tmp_path / "rules.yml").write_text(rules)
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [%s]\n"
        "scrape_configs:\n"
        "  - job_name: node\n"
        "    static_configs: [{targets: ['127.0.0.1:%d']}]\n" % (tmp_path / "rules.yml", exporter_port))
    procs = [
        _start([NODE_EXPORTER, "--web.listen-address=127.0.0.1:%d" % exporter_port, "--collector.disable-defaults",
                "--collector.textfile", "--collector.textfile.directory=%s" % textfile_dir],
               str(tmp_path / "node-exporter.log"), user="prometheus"),
        _start([PROMETHEUS, "--config.file=%s" % (tmp_path / "prometheus.yml"),
                "--storage.tsdb.path=%s" % (tmp_path / "tsdb"),
                "--web.listen-address=127.0.0.1:%d" % prometheus_port],
               str(tmp_path / "prometheus.log")),
    ]
    try:
        yield {"dir": textfile_dir, "url": "http://127.0.0.1:%d" % prometheus_port, "logs": tmp_path}
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(textfile_dir, ignore_errors=True)


def _account_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _publish(host_dir, textfile_dir):
    """Root's copy of the renewer's textfile: a regular file, root 0644, swapped in by rename."""
    staging = os.path.join(textfile_dir, ".minibus_certs.prom.new")
    shutil.copyfile(os.path.join(host_dir, "minibus_certs.prom"), staging)
    os.chmod(staging, 0o644)
    os.rename(staging, os.path.join(textfile_dir, "minibus_certs.prom"))


def _query(mon, expr):
    answer = requests.get(mon["url"] + "/api/v1/query", params={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def _alerts(mon, name):
    answer = requests.get(mon["url"] + "/api/v1/alerts", timeout=10).json()
    return [a for a in answer["data"]["alerts"] if a["labels"]["alertname"] == name]


def _until(mon, what, check):
    deadline = time.time() + WAIT_SECONDS
    while True:
        try:
            value = check()
        except requests.RequestException:
            value = None
        if value:
            return value
        if time.time() > deadline:
            logs = "".join("\n--- %s\n%s" % (n, (mon["logs"] / n).read_text()[-2000:])
                           for n in ("prometheus.log", "node-exporter.log"))
            pytest.fail("%s: not within %d s%s" % (what, WAIT_SECONDS, logs))
        time.sleep(0.5)


def _firing(mon, name):
    return lambda: [a for a in _alerts(mon, name) if a["state"] == "firing"]


def test_prometheus_sees_the_series_and_the_failing_renewal_alert_fires_and_clears(vault, host_dir, monitoring):
    bootstrap_host(vault, host_dir)
    config = write_renewer_config(vault, host_dir)
    assert run_renewer(config).returncode == 0
    _publish(host_dir, monitoring["dir"])

    state = _until(monitoring, "the state set is scraped", lambda: _query(
        monitoring, 'minibus_certs_state{job="node",common_name="host1.minibus.test"} == 1'))
    assert [s["metric"]["state"] for s in state] == ["ok"]
    with open(paths(host_dir)["cert_path"], "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    info = _query(monitoring, "minibus_certs_certificate_info")
    assert len(info) == 1 and info[0]["metric"]["issuer"] == cert.issuer.rfc4514_string()
    assert int(info[0]["metric"]["serial"].replace(":", ""), 16) == cert.serial_number
    assert _query(monitoring, "node_textfile_scrape_error == 0")
    assert not _alerts(monitoring, "MinibusCertRenewalFailing")

    vault.seal()
    try:
        assert run_renewer(config).returncode == 1
        _publish(host_dir, monitoring["dir"])
        firing = _until(monitoring, "MinibusCertRenewalFailing fires", _firing(monitoring, "MinibusCertRenewalFailing"))
        assert firing[0]["labels"]["common_name"] == "host1.minibus.test"
        assert "keeps failing" in firing[0]["annotations"]["summary"]
        assert [s["metric"]["state"] for s in _query(monitoring, "minibus_certs_state == 1")] == ["renewal_failed"]
    finally:
        vault.unseal()

    assert run_renewer(config).returncode == 0
    _publish(host_dir, monitoring["dir"])
    _until(monitoring, "MinibusCertRenewalFailing clears", lambda: not _alerts(monitoring, "MinibusCertRenewalFailing"))
    assert [s["metric"]["state"] for s in _query(monitoring, "minibus_certs_state == 1")] == ["ok"]


def test_a_broken_or_removed_textfile_raises_the_scrape_error_and_missing_alerts(vault, host_dir, monitoring):
    bootstrap_host(vault, host_dir)
    assert run_renewer(write_renewer_config(vault, host_dir)).returncode == 0
    _publish(host_dir, monitoring["dir"])
    _until(monitoring, "the series are scraped", lambda: _query(monitoring, "minibus_certs_last_attempt_timestamp_seconds"))

    textfile = os.path.join(monitoring["dir"], "minibus_certs.prom")
    with open(textfile, "a") as handle:
        handle.write("minibus_certs_state{broken\n")
    _until(monitoring, "MinibusCertTextfileScrapeError fires", _firing(monitoring, "MinibusCertTextfileScrapeError"))
    firing = _until(monitoring, "MinibusCertMetricsMissing fires (node_exporter drops a file it cannot parse)",
                    _firing(monitoring, "MinibusCertMetricsMissing"))
    assert firing[0]["labels"]["common_name"] == "host1.minibus.test"

    os.unlink(textfile)
    _until(monitoring, "MinibusCertTextfileScrapeError clears", lambda: not _alerts(monitoring, "MinibusCertTextfileScrapeError"))
    assert _firing(monitoring, "MinibusCertMetricsMissing")()

    _publish(host_dir, monitoring["dir"])
    _until(monitoring, "MinibusCertMetricsMissing clears", lambda: not _alerts(monitoring, "MinibusCertMetricsMissing"))
