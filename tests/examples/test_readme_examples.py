# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Every ```yaml block of the READMEs, run as pasted against a real lab (make test-examples).

The lab: the collection built with ``ansible-galaxy collection build`` and installed from that
tarball as the README says, a dev OpenBao over HTTPS (labs/vault.py) configured with
``minibus.pki.vault_bootstrap`` (which writes the Root CA to ``~/.minibus.pki/root-ca.pem``, ``HOME``
being the lab's), and a broker token in ``VAULT_TOKEN`` (``VAULT_ADDR``, ``VAULT_CACERT`` set), as the
README tells users to have.

Substitution rule (labs/readme.py, shared with the fleet run on real hosts): before a block runs,
these strings are replaced, in this order, and nothing else:

    https://vault.example.org:8200                -> the lab's Vault URL
    /usr/local/share/ca-certificates/vault-ca.crt -> the lab's CA file (the CA of Vault's certificate)
    /etc/ssl/minibus                              -> a directory of the lab (no test writes the machine's /etc)
    example.org                                   -> minibus.test (the domain the bootstrap allows by default)

How a block runs depends on what it is:

- first line ``# not run: <reason>``: not run (a reason is required); it must still be valid YAML.
- first line ``# file: <name>``: written as <name> for the later blocks of the same README; a file
  named ``inventory.yml`` is their inventory.
- a mapping with ``collections``: a requirements file, installed with
  ``ansible-galaxy collection install -r`` (offline) in a directory holding the built tarball.
- a list of tasks: run for real in a play on the host ``host1.minibus.test`` (local connection, no
  fact gathering), with ``MINIBUS_CSR_SECRET_ID`` holding a fresh secret id of the clients' AppRole.
- a playbook (plays with ``hosts``): ``--syntax-check``; then the whole playbook with a tag that no
  task has, so that only fact gathering and the role's argument validation run (both ``always``);
  then, for each play that
  applies ``minibus.pki.minibus_certs``, the role's ``platform`` and ``preflight`` task files with
  the play's hosts, become and vars and the role entry's vars as pasted. In both runs the local
  machine stands in for each host (local connection, no become): facts are read, assertions
  made, nothing written. The whole fleet example (README.md's inventory and every playbook applying
  the role) then runs for real on systemd hosts in tests/examples/test_fleet_on_hosts.sh. A playbook that
  applies no minibus_certs (roles/vault_pki/README.md) gets the syntax check and argument validation only.
Anything else fails: mark it ``# not run: <reason>``.
"""

from __future__ import absolute_import, division, print_function

import glob
import os
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from labs.readme import DOCS, ROLE, blocks, marker, role_entries
from labs.readme import substitute as readme_substitute
from labs.vault import DevBao, bao_path

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NO_SUCH_TAG = "minibus_examples_no_task_has_this_tag"
BLOCKS = blocks()


def substitute(text, lab):
    return readme_substitute(text, lab["url"], lab["ca"], lab["ssl_dir"])


def run(args, env, cwd=None, check=True):
    proc = subprocess.run(args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    if check and proc.returncode != 0:
        pytest.fail("%s failed (%d):\n%s" % (" ".join(args), proc.returncode, proc.stdout[-6000:]))
    return proc


def recap_clean(output):
    recap = output[output.rfind("PLAY RECAP"):]
    assert "PLAY RECAP" in output, output[-3000:]
    assert not re.search(r"(failed|unreachable)=[1-9]", recap), output[-6000:]


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("examples"))
    home = os.path.join(root, "home")
    os.makedirs(home)
    env = dict(os.environ, HOME=home, ANSIBLE_HOME=os.path.join(root, "ansible-home"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_FORCE_COLOR="0", ANSIBLE_COLLECTIONS_PATH=os.path.join(root, "collections"),
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    for name in ("VAULT_TOKEN", "BAO_TOKEN", "MINIBUS_CSR_SECRET_ID", "ANSIBLE_CONFIG"):
        env.pop(name, None)
    run(["ansible-galaxy", "collection", "build", "--force", "--output-path", os.path.join(root, "dist"), REPO], env)
    tarball = glob.glob(os.path.join(root, "dist", "minibus-pki-*.tar.gz"))[0]
    run(["ansible-galaxy", "collection", "install", "--offline", "-p", env["ANSIBLE_COLLECTIONS_PATH"], tarball], env)
    server = DevBao(os.path.join(root, "bao"))
    server.start()
    try:
        env.update(server.env())
        admin = dict(env, VAULT_TOKEN="root", BAO_TOKEN="root")
        run(["ansible-playbook", "-i", "localhost,", "minibus.pki.vault_bootstrap",
             "-e", "minibus_vault_ca_cert=%s" % env["VAULT_CACERT"]], admin)
        assert os.path.isfile(os.path.join(home, ".minibus.pki", "root-ca.pem"))
        bao = bao_path()
        env["VAULT_TOKEN"] = run([bao, "token", "create", "-policy=minibus-broker", "-ttl=1h", "-field=token"],
                                 admin).stdout.strip()
        the_lab = dict(root=root, env=env, admin=admin, bao=bao, tarball=tarball, url=env["VAULT_ADDR"],
                       ca=env["VAULT_CACERT"], ssl_dir=os.path.join(root, "ssl"), files={})
        # '# file:' blocks first, so that any one example can run alone (pytest -k).
        for doc, _number, text in BLOCKS:
            kind, name = marker(text)
            if kind == "file" and name and "/" not in name:
                path = os.path.join(workdir_of(doc, the_lab), name)
                with open(path, "w") as handle:
                    handle.write(substitute(text, the_lab))
                the_lab["files"].setdefault(doc, {})[name] = path
        yield the_lab
    finally:
        server.stop()


def workdir_of(doc, lab):
    path = os.path.join(lab["root"], "work", doc.replace("/", "_"))
    os.makedirs(path, exist_ok=True)
    return path


def test_tarball_names_follow_galaxy_version():
    """A version written in a README (minibus-pki-<version>.tar.gz) is the one galaxy.yml builds."""
    with open(os.path.join(REPO, "galaxy.yml")) as handle:
        version = yaml.safe_load(handle)["version"]
    for doc in DOCS:
        with open(os.path.join(REPO, doc)) as handle:
            named = set(re.findall(r"minibus-pki-([0-9][0-9A-Za-z.+-]*?)\.tar\.gz", handle.read()))
        assert named <= {version}, "%s names minibus-pki-%s.tar.gz; galaxy.yml builds %s" % (doc, named, version)


def test_readmes_have_examples():
    assert len(BLOCKS) >= 8, "fewer YAML blocks than the READMEs had: %r" % [block[:2] for block in BLOCKS]


@pytest.mark.parametrize("doc,number,text", BLOCKS, ids=["%s-block%d" % block[:2] for block in BLOCKS])
def test_example(doc, number, text, lab):
    kind, value = marker(text)
    data = yaml.safe_load(text)
    if kind == "not run":
        assert value, "%s block %d: '# not run:' needs a reason" % (doc, number)
        return
    text = substitute(text, lab)
    workdir = workdir_of(doc, lab)
    if kind == "file":
        assert value and "/" not in value, "%s block %d: '# file:' needs a plain file name" % (doc, number)
        assert lab["files"][doc][value], "written by the lab"
        return
    if isinstance(data, dict) and "collections" in data:
        run_requirements(text, workdir, lab)
    elif isinstance(data, list) and data and all(isinstance(p, dict) and "hosts" in p for p in data):
        run_playbook(doc, number, text, data, workdir, lab)
    elif isinstance(data, list) and data and all(isinstance(t, dict) and "hosts" not in t for t in data):
        run_tasks(number, text, workdir, lab)
    else:
        pytest.fail("%s block %d is neither tasks, a playbook nor a requirements file: mark it "
                    "'# not run: <reason>'" % (doc, number))


def run_requirements(text, workdir, lab):
    where = os.path.join(workdir, "requirements")
    os.makedirs(where, exist_ok=True)
    shutil.copy(lab["tarball"], where)
    with open(os.path.join(where, "requirements.yml"), "w") as handle:
        handle.write(text)
    target = os.path.join(where, "collections")
    run(["ansible-galaxy", "collection", "install", "--offline", "-r", "requirements.yml", "-p", target],
        lab["env"], cwd=where)
    assert os.path.isfile(os.path.join(target, "ansible_collections", "minibus", "pki", "MANIFEST.json"))


def run_tasks(number, text, workdir, lab):
    play = [{"name": "README example tasks", "hosts": "all", "gather_facts": False,
             "tasks": yaml.safe_load(text)}]
    path = os.path.join(workdir, "tasks-%d.yml" % number)
    with open(path, "w") as handle:
        yaml.safe_dump(play, handle, sort_keys=False)
    secret_id = run([lab["bao"], "write", "-f", "-field=secret_id",
                     "auth/approle/role/minibus-generate-sign-server-keys/secret-id"], lab["admin"]).stdout.strip()
    env = dict(lab["env"], MINIBUS_CSR_SECRET_ID=secret_id)
    inventory = "host1.minibus.test ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable
    with open(os.path.join(workdir, "local.ini"), "w") as handle:
        handle.write(inventory)
    recap_clean(run(["ansible-playbook", "-i", os.path.join(workdir, "local.ini"), path], env).stdout)


def run_playbook(doc, number, text, data, workdir, lab):
    path = os.path.join(workdir, "playbook-%d.yml" % number)
    with open(path, "w") as handle:
        handle.write(text)
    inventory = lab["files"].get(doc, {}).get("inventory.yml") or generated_inventory(data, workdir)
    env = lab["env"]
    # The local machine stands in for every host: facts are read from it (the plays gather them as
    # pasted), nothing is written, nothing is become.
    local = ["-e", "ansible_connection=local", "-e", "ansible_become=false",
             "-e", "ansible_python_interpreter=%s" % sys.executable]
    run(["ansible-playbook", "-i", inventory, "--syntax-check", path], env)
    validated = run(["ansible-playbook", "-i", inventory, "--tags", NO_SUCH_TAG, path] + local, env).stdout
    recap_clean(validated)
    applies_role = [play for play in data if list(role_entries(play))]
    assert validated.count("Validating arguments against arg spec") >= len(applies_role), validated[-4000:]
    if not applies_role:
        # a playbook of another role (roles/vault_pki/README.md): syntax and argument validation only
        assert "Validating arguments against arg spec" in validated, validated[-4000:]
        return
    # The role's first task files as pasted: platform (facts of the OS) and preflight (assertions).
    checks = []
    for play in applies_role:
        for entry in role_entries(play):
            tasks = [{"name": "%s | %s" % (ROLE, part), "ansible.builtin.include_role":
                      {"name": ROLE, "tasks_from": part}, "vars": entry.get("vars") or {}}
                     for part in ("platform", "preflight")]
            checks.append({key: play[key] for key in ("name", "hosts", "become", "vars") if key in play})
            # Facts as the pasted play gathers them: the role's common name defaults to the host's FQDN.
            checks[-1].update(gather_facts=play.get("gather_facts", True), tasks=tasks)
    preflight = os.path.join(workdir, "preflight-%d.yml" % number)
    with open(preflight, "w") as handle:
        yaml.safe_dump(checks, handle, sort_keys=False)
    output = run(["ansible-playbook", "-i", inventory, preflight] + local, env).stdout
    recap_clean(output)
    assert "Preflight | the pinned Root CA is given" in output, output[-4000:]


def generated_inventory(data, workdir):
    """One host per group the plays name, for a README that shows no inventory of its own."""
    groups = {}
    for play in data:
        for group in str(play["hosts"]).split(":"):
            groups[group] = {"hosts": {"%s-1.minibus.test" % group.replace("_", "-"): None}}
    path = os.path.join(workdir, "generated-inventory.yml")
    with open(path, "w") as handle:
        yaml.safe_dump({"all": {"children": groups}}, handle)
    return path
