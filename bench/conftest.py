# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.minibus.pki`` (the real core) and ``fleet_sim`` importable for bench tests.

The collection through tests/collection_path.py; ``bench/`` itself goes on sys.path for ``import fleet_sim``.
"""

from __future__ import absolute_import, division, print_function

import os
import sys

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(BENCH_DIR), "tests"))
from collection_path import make_collection_importable  # noqa: E402  pylint: disable=wrong-import-position

make_collection_importable("minibus-pki-bench-")
if BENCH_DIR not in sys.path:
    sys.path.insert(0, BENCH_DIR)
