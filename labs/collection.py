# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.minibus.pki`` importable from a plain checkout (shared by the conftests and labs).

A temporary directory gets an ``ansible_collections/minibus/pki`` symlink to the repository root
and goes first on sys.path (``ansible_collections`` and ``ansible_collections.minibus`` are implicit
namespace packages). The same directory serves as ANSIBLE_COLLECTIONS_PATH for tests that run
ansible. Inside an ``ansible_collections/minibus/pki`` tree (ansible-test) the tree's root is used.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import atexit
import os
import shutil
import sys
import tempfile

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_collection_importable(prefix="minibus-pki-"):
    """Return the directory that holds ``ansible_collections/minibus/pki`` (now on sys.path)."""
    real = os.path.realpath(REPO_ROOT)
    parts = real.split(os.sep)
    if len(parts) >= 3 and parts[-3] == "ansible_collections" and parts[-2:] == ["minibus", "pki"]:
        top = os.path.dirname(os.path.dirname(os.path.dirname(real)))
    else:
        top = tempfile.mkdtemp(prefix=prefix)
        atexit.register(shutil.rmtree, top, True)
        namespace = os.path.join(top, "ansible_collections", "minibus")
        os.makedirs(namespace)
        os.symlink(REPO_ROOT, os.path.join(namespace, "pki"))
    if top not in sys.path:
        sys.path.insert(0, top)
    return top
