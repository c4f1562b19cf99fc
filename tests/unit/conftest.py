# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make ``ansible_collections.minibus.pki`` importable from a plain repository checkout.

ansible-test runs the units from inside an ``ansible_collections/minibus/pki`` tree, where nothing
needs doing. From a plain checkout (``python -m pytest tests/unit``) a temporary directory gets an
``ansible_collections/minibus/pki`` symlink to the repository root and goes first on sys.path;
``ansible_collections`` and ``ansible_collections.minibus`` are implicit namespace packages.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import atexit
import os
import shutil
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _already_in_collection_tree(root):
    parts = os.path.realpath(root).split(os.sep)
    return len(parts) >= 3 and parts[-3] == "ansible_collections" and parts[-2:] == ["minibus", "pki"]


def _make_importable():
    if _already_in_collection_tree(REPO_ROOT):
        top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(REPO_ROOT))))
        if top not in sys.path:
            sys.path.insert(0, top)
        return
    tmp = tempfile.mkdtemp(prefix="minibus-pki-units-")
    atexit.register(shutil.rmtree, tmp, True)
    namespace = os.path.join(tmp, "ansible_collections", "minibus")
    os.makedirs(namespace)
    os.symlink(REPO_ROOT, os.path.join(namespace, "pki"))
    sys.path.insert(0, tmp)


_make_importable()
