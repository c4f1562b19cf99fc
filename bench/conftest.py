# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.minibus.pki`` (the real core) importable for bench tests (labs/collection.py).

``fleet_sim`` is ``bench.fleet_sim``: pytest.ini puts the repository root on sys.path.
"""

from __future__ import absolute_import, division, print_function

from labs.collection import make_collection_importable

make_collection_importable("minibus-pki-bench-")
