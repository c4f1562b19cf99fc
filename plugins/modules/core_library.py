#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: core_library
short_description: Install this collection's core library on a host, in one step
version_added: 0.2.0
description:
  - Makes O(path) hold this collection's core library (its C(plugins/module_utils) files, the code of the
    on-host renewer C(minibus-certs-renew), its publish step and the local fact) as a Python package, owned by
    root with mode C(0644), and removes any other C(.py) file there (a file a later version dropped).
  - The files are the ones this module itself runs with, byte for byte, so the host's renewer and the
    collection on the controller never differ.
  - Every file is compared in one module run and only what differs is written (each file through a temp file
    and C(rename(2))), so a re-run costs one module run, not one per file.
  - Refused, with nothing changed, when O(path) or any directory above it is not root's alone (owned by another
    account, or group- or world-writable without the sticky bit), or when a link or a file is in the place of a
    directory. Missing directories are created with mode C(0755).
  - The role C(minibus.pki.minibus_certs) installs the renewer with it; there is little reason to call it directly.
author:
  - minibus.pki maintainers (@minibus-pki)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports what would be written and removed; changes nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
options:
  path:
    description:
      - The package directory, for example C(/usr/local/lib/minibus-certs/minibus_pki). Absolute.
      - Its parent goes on the renewer's C(sys.path); the package is imported by its directory's name.
    type: path
    required: true
notes:
  - Run it as root (C(become)). The files are root's, so that the renewal account cannot change the code root
    runs with C(--publish).
"""

EXAMPLES = r"""
- name: The renewer's code
  minibus.pki.core_library:
    path: /usr/local/lib/minibus-certs/minibus_pki
  become: true
"""

RETURN = r"""
written:
  description: The files written (or, in check mode, that would be), by name; empty when all were in place.
  returned: always
  type: list
  elements: str
  sample: [vault.py]
removed:
  description: The C(.py) files removed from O(path) because this version does not ship them.
  returned: always
  type: list
  elements: str
  sample: []
"""

import types

from ansible.module_utils.basic import AnsibleModule

# Every core module, imported by name so that Ansible ships each of them with this module (a unit test
# checks the list against plugins/module_utils); importing them has no side effect.
from ansible_collections.minibus.pki.plugins import module_utils as _core
from ansible_collections.minibus.pki.plugins.module_utils import (  # noqa: F401 pylint: disable=unused-import
    _auth_approle,
    _auth_token,
    _authenticator,
    _privdrop,
    audit,
    certs,
    errors,
    fact,
    files,
    health,
    issuance,
    library,
    options,
    outage,
    publish,
    renewer,
    renewer_config,
    secret_store,
    vault,
)

# The import above made each of them an attribute of the package.
CORE_MODULES = tuple(sorted((value for value in vars(_core).values() if isinstance(value, types.ModuleType)),
                            key=lambda module: module.__name__))


def main():
    module = AnsibleModule(argument_spec=dict(path=dict(type="path", required=True)), supports_check_mode=True)
    try:
        result = library.install(module.params["path"], library.core_sources(CORE_MODULES), module.check_mode)
    except errors.MinibusError as exc:
        module.fail_json(msg=exc.message)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
