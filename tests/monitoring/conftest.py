# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.minibus.pki`` importable from a plain checkout (tests/collection_path.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from collection_path import make_collection_importable  # noqa: E402  pylint: disable=wrong-import-position

make_collection_importable("minibus-pki-monitoring-")
