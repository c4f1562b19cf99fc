# -*- coding: utf-8 -*-
# SPDX-License-Identifier: GPL-3.0-or-later
"""The core's import graph has no cycle: every file imports only files below it.

Read from the source with ast (every import, also those inside functions), so a lazy import that closes
a circle fails here as much as a top-level one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import ast
import os

import pytest

CORE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "plugins", "module_utils")
ABSOLUTE = "ansible_collections.minibus.pki.plugins.module_utils"


def _core_modules():
    return sorted(name[:-3] for name in os.listdir(CORE) if name.endswith(".py") and name != "__init__.py")


def _imports(module, known):
    with open(os.path.join(CORE, module + ".py")) as handle:
        tree = ast.parse(handle.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level == 1 or base == ABSOLUTE:
                if base and base != ABSOLUTE:
                    found.add(base)
                else:
                    found.update(alias.name for alias in node.names if alias.name in known)
            elif base.startswith(ABSOLUTE + "."):
                found.add(base[len(ABSOLUTE) + 1:])
    return found & set(known)


def _graph():
    known = _core_modules()
    return dict((module, _imports(module, known)) for module in known)


def _cycle(graph):
    """One import cycle as a list of module names, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target, path + [target])
                if found:
                    return found
        state[node] = "done"
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_core_has_no_import_cycle():
    graph = _graph()
    assert len(graph) >= 10 and graph["issuance"], graph  # the parser sees the real imports
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


@pytest.mark.parametrize("graph,expected", [
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
])
def test_the_cycle_finder_finds_cycles(graph, expected):
    assert _cycle(graph) == expected


def test_errors_and_certs_import_nothing_above_them():
    graph = _graph()
    assert graph["errors"] == set()
    assert graph["certs"] <= {"errors"}
