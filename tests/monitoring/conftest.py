# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Make ``ansible_collections.minibus.pki`` importable from a plain checkout (labs/collection.py)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from labs.collection import make_collection_importable

make_collection_importable("minibus-pki-monitoring-")
