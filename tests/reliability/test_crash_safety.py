# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""kill -9 the on-host renewer at many points of one forced renewal; the host must stay consistent.

A dry run of tests/reliability/kill_at.py counts the 'line' events the core executes in one forced
renewal and records, for each, the chain of core functions. Kill points are spread evenly over the
whole range and, in addition, placed at the start, middle and end of every phase (login, secret id
mint/unwrap/persist, key generation, sign, install/swap, revoke). After each kill:

* the public paths hold a matching key/cert whose chain verifies (old or new set, never a mix);
* the stored secret id is usable (a normal forced renewer run succeeds), or the store is in the
  documented recoverable state: ``in-use`` with a spent id -> the next renewer run fails with one
  line and marks it ``consumed`` -> the role's check-mode probe reports a change -> the role's real
  run (ensure_certificate with a fresh wrapped secret id from the broker) repairs it, after which
  the renewer works again;
* a ``ready`` store must always be usable (a kill can never leave a spent id marked ready);
* after the next successful run no ``.staging-*``/``.link-*`` debris is left in the store.
"""

from __future__ import absolute_import, division, print_function

import collections
import json
import os
import subprocess
import sys


from labs.hosts import (
    assert_host_consistent, bootstrap_host, clean_env, host_params, leftovers, one_line_output, run_renewer,
    store_record, write_renewer_config
)
from ansible_collections.minibus.pki.plugins.module_utils import issuance

KILL_AT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kill_at.py")
EVEN_POINTS = 40

# phase -> the core function whose presence in the stack puts an event in that phase (first match wins)
PHASES = (
    ("revoke", "vault.revoke_self"),
    ("login", "vault.approle_login"),
    ("mark-in-use", "issuance._credentials"),
    ("rotation-mint", "vault.mint_wrapped_secret_id"),
    ("rotation-unwrap", "vault.unwrap_secret_id"),
    ("rotation-persist", "secret_store.save"),
    ("keygen", "certs.generate_private_key"),
    ("csr", "certs.build_csr"),
    ("sign", "vault.sign_csr"),
    ("swap", "files._swap_symlink"),
    ("install", "files.install"),
    ("lock-and-plan", "issuance.plan"),
)
REQUIRED_PHASES = ("login", "rotation-mint", "rotation-unwrap", "rotation-persist", "keygen", "sign",
                   "install", "swap")


def phase_of(stack):
    names = stack.split(">")
    for phase, func in PHASES:
        if func in names:
            return phase
    return "other"


def kill_run(n, config, report):
    return subprocess.run([sys.executable, KILL_AT, str(n), config, report], check=False, env=clean_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, timeout=120)


def choose_points(events):
    total = len(events)
    points = set(int(round(1 + i * (total - 1) / (EVEN_POINTS - 1))) for i in range(EVEN_POINTS))
    by_phase = collections.defaultdict(list)
    for event in events:
        by_phase[phase_of(event["stack"])].append(event["n"])
    for phase, ns in by_phase.items():
        points.update((ns[0], ns[len(ns) // 2], ns[-1]))
    return sorted(points), by_phase


def test_kill_renewer_anywhere(vault, host_dir, tmp_path):
    bootstrap_host(vault, host_dir)
    config = write_renewer_config(vault, host_dir)
    assert run_renewer(config).returncode == 0

    dry = str(tmp_path / "dry.jsonl")
    proc = kill_run(0, config, dry)
    assert proc.returncode == 0, proc.stderr
    with open(dry) as handle:
        events = [json.loads(line) for line in handle]
    assert len(events) > 500, len(events)
    points, by_phase = choose_points(events)
    for phase in REQUIRED_PHASES:
        assert by_phase.get(phase), "the dry run never reached %s: %s" % (phase, sorted(by_phase))
    assert len(points) >= 50

    sites = str(tmp_path / "sites.jsonl")
    outcomes = collections.Counter()
    killed_phases = collections.Counter()
    tmp_debris = set()
    for n in points:
        proc = kill_run(n, config, sites)
        if proc.returncode != -9:
            # the run finished before reaching line n (a few lines of drift between runs)
            assert proc.returncode == 0, (n, proc.stdout, proc.stderr)
            outcomes["finished-before-kill"] += 1
            continue
        assert_host_consistent(host_dir)
        state = (store_record(host_dir) or {}).get("state")
        assert state in ("ready", "in-use"), (n, state)

        after = run_renewer(config)
        if after.returncode == 0:
            outcomes["usable-%s" % state] += 1
        else:
            # Documented recoverable state: only an in-use store may hold a spent id.
            assert state == "in-use", "kill at %d left a ready store with an unusable id: %s" % (n, after.stderr)
            line = one_line_output(after)
            assert "already used" in line, line
            assert store_record(host_dir)["state"] == "consumed"
            assert_host_consistent(host_dir)
            # The role's check-mode probe now sees the need for a new secret id ...
            probe = issuance.ensure_certificate(host_params(vault, host_dir), check_mode=True)
            assert probe["changed"] and "new secret id" in probe["reason"], probe
            # ... and its real run repairs the host with a fresh wrapped secret id from the broker.
            repaired = issuance.ensure_certificate(
                host_params(vault, host_dir, secret_id_wrapping_token=vault.mint_wrapped()))
            assert repaired["secret_id_rotated"] and store_record(host_dir)["state"] == "ready"
            again = run_renewer(config)
            assert again.returncode == 0, again.stderr
            outcomes["repaired-by-ansible"] += 1
        assert_host_consistent(host_dir)
        debris = leftovers(os.path.dirname(host_dir))
        assert not [d for d in debris if ".staging-" in d or ".link-" in d], (n, debris)
        tmp_debris.update(d for d in debris if ".tmp-" in d)

    with open(sites) as handle:
        kills = [json.loads(line) for line in handle]
    for kill in kills:
        killed_phases[phase_of(kill["stack"])] += 1
    summary = {"total_line_events": len(events), "points": len(points), "kills": len(kills),
               "outcomes": dict(outcomes), "phases": dict(killed_phases),
               "distinct_sites": len(set((k["file"], k["line"]) for k in kills)),
               "tmp_debris": sorted(tmp_debris)}
    with open(str(tmp_path / "crash_summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps(summary))
    assert len(kills) >= 50, summary
    assert summary["distinct_sites"] >= 40, summary
    for phase in REQUIRED_PHASES:
        assert killed_phases[phase] >= 2, (phase, summary)
    assert outcomes["repaired-by-ansible"] >= 1, summary  # some kill did land after the login spent the id


class TempFileLeftover(AssertionError):
    """The specific invariant the test below guards (kept distinct from incidental failures)."""


def test_no_secret_id_temp_file_survives_a_kill(vault, host_dir, tmp_path):
    bootstrap_host(vault, host_dir)
    config = write_renewer_config(vault, host_dir)
    dry = str(tmp_path / "dry.jsonl")
    assert kill_run(0, config, dry).returncode == 0
    with open(dry) as handle:
        events = [json.loads(line) for line in handle]
    # the line `os.rename(tmp, path)` of write_file_atomic while secret_store.save persists the rotated id:
    # a line event fires before the line runs, so the temp file is complete and not yet renamed
    src = os.path.join(os.path.dirname(issuance.__file__), "files.py")
    with open(src) as handle:
        rename_line = [i for i, text in enumerate(handle, 1) if text.strip() == "os.rename(tmp, path)"][0]
    targets = [e["n"] for e in events
               if e["stack"].endswith("secret_store.save>files.write_file_atomic") and e["line"] == rename_line]
    assert len(targets) == 1, targets
    n = targets[0]
    proc = kill_run(n, config, str(tmp_path / "site.jsonl"))
    assert proc.returncode == -9
    ok = run_renewer(config)
    if ok.returncode != 0:
        issuance.ensure_certificate(host_params(vault, host_dir, secret_id_wrapping_token=vault.mint_wrapped()))
        assert run_renewer(config).returncode == 0
    debris = leftovers(host_dir)
    if debris:
        raise TempFileLeftover("left behind after a kill and a successful run: %s" % debris)
