# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Render an AWX credential into an ansible-runner private_data_dir, as AWX does.

    python3 tools/demo/awx_credential.py awx/credential_type.yml PRIVATE_DATA_DIR

Inputs come from the environment: CRED_VAULT_URL, CRED_BROKER_TOKEN_FILE, CRED_CA_BUNDLE_FILE (the
CA that signed Vault's TLS certificate; empty: the input left empty), CRED_ROLE_ID (optional), COLLECTIONS, CONTAINERS_CONF;
JOB_TRUST_ANCHOR_FILE (optional) becomes the job template's extra var minibus_site_trust_anchor_file.
The injectors of the credential type are rendered with AWX's sandboxed Jinja2, so the real
injector definitions are what is tested. Writes env/envvars, env/extravars and the injected files.
"""
# pylint: disable=consider-using-with,unspecified-encoding
import os
import sys

import yaml
from jinja2.sandbox import ImmutableSandboxedEnvironment

ct_path, pdd = sys.argv[1], sys.argv[2]
ct = yaml.safe_load(open(ct_path))
inputs = {
    "vault_url": os.environ["CRED_VAULT_URL"],
    # CRED_CA_BUNDLE_FILE empty or unset: the input left empty, as its help text allows
    "vault_ca_bundle": open(os.environ["CRED_CA_BUNDLE_FILE"]).read() if os.environ.get("CRED_CA_BUNDLE_FILE") else "",
    "broker_token": open(os.environ["CRED_BROKER_TOKEN_FILE"]).read().strip(),
}
if os.environ.get("CRED_ROLE_ID"):
    inputs["role_id"] = os.environ["CRED_ROLE_ID"]
fields = {f["id"] for f in ct["inputs"]["fields"]}
missing = [r for r in ct["inputs"].get("required", []) if r not in inputs]
assert not missing, "required inputs missing: %s" % missing
# AWX (CredentialType.inject_credential): only inputs with a non-empty value are in the namespace;
# an empty or unset one is undefined there.
ns = {f: inputs[f] for f in fields if inputs.get(f)}
env = ImmutableSandboxedEnvironment()
inj = ct["injectors"]
files = {}
for key, tmpl in (inj.get("file") or {}).items():
    name = key.split(".", 1)[1] if "." in key else "cred"
    path = os.path.join(pdd, "env", "credential_" + name)
    with open(path, "w") as fh:
        fh.write(env.from_string(tmpl).render(**ns))
    os.chmod(path, 0o600)
    files[name] = path
ns["tower"] = {"filename": files if len(files) > 1 or "cred" not in files else files["cred"]}
envvars = {k: env.from_string(v).render(**ns) for k, v in (inj.get("env") or {}).items()}
extravars = {k: env.from_string(v).render(**ns) for k, v in (inj.get("extra_vars") or {}).items()}
# The job template's own extra vars (not the credential's): the root CA the lab's bootstrap wrote,
# which every host pins (site.yml's default, ~/.minibus.pki/root-ca.pem, is shared by every bootstrap
# run on this machine).
if os.environ.get("JOB_TRUST_ANCHOR_FILE"):
    extravars["minibus_site_trust_anchor_file"] = os.environ["JOB_TRUST_ANCHOR_FILE"]
# Runner plumbing (not from the credential): where the collection is, no colour.
envvars.update({"ANSIBLE_COLLECTIONS_PATH": os.environ["COLLECTIONS"], "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_FORCE_COLOR": "0"})
if os.environ.get("CONTAINERS_CONF"):
    envvars["CONTAINERS_CONF"] = os.environ["CONTAINERS_CONF"]
yaml.safe_dump(envvars, open(os.path.join(pdd, "env", "envvars"), "w"), default_flow_style=False)
yaml.safe_dump(extravars, open(os.path.join(pdd, "env", "extravars"), "w"), default_flow_style=False)
os.chmod(os.path.join(pdd, "env", "envvars"), 0o600)
shown = {k: ("<%d chars>" % len(v) if k == "VAULT_TOKEN" else v) for k, v in envvars.items()}
print("[render] credential env: %s" % shown, file=sys.stderr)
print("[render] credential extra_vars: %s" % extravars, file=sys.stderr)
