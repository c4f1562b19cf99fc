# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Make ``ansible_collections.minibus.pki`` (the real core) and ``fleet_sim`` importable for bench tests.

A temporary directory gets an ``ansible_collections/minibus/pki`` symlink to the repository root and goes
first on sys.path (``ansible_collections`` and ``ansible_collections.minibus`` are implicit namespace
packages); ``bench/`` itself goes on sys.path for ``import fleet_sim``.
"""

from __future__ import absolute_import, division, print_function

import atexit
import os
import shutil
import sys
import tempfile

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)


def _make_importable():
    tmp = tempfile.mkdtemp(prefix="minibus-pki-bench-")
    atexit.register(shutil.rmtree, tmp, True)
    namespace = os.path.join(tmp, "ansible_collections", "minibus")
    os.makedirs(namespace)
    os.symlink(REPO_ROOT, os.path.join(namespace, "pki"))
    sys.path.insert(0, tmp)
    if BENCH_DIR not in sys.path:
        sys.path.insert(0, BENCH_DIR)


_make_importable()
