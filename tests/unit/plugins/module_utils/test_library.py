# -*- coding: utf-8 -*-
# Copyright: minibus.pki contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The core library's install: exactly the shipped files, root's, in one step; refused where another account could swap entries."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import os
import stat

import pytest

from ansible_collections.minibus.pki.plugins.module_utils import library
from ansible_collections.minibus.pki.plugins.module_utils.errors import MinibusError

CORE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "plugins", "module_utils")
SOURCES = {"a.py": b"A = 1\n", "b.py": b"from . import a\n", "__init__.py": b""}

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="the install checks that directories are root's")


def _tree(path):
    """{name: (kind, mode, bytes)} of every entry in path, links not followed."""
    out = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        st = os.lstat(full)
        data = open(full, "rb").read() if stat.S_ISREG(st.st_mode) else os.readlink(full) if stat.S_ISLNK(st.st_mode) else None
        out[name] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, data)
    return out


@pytest.fixture
def base(tmp_path):
    os.chmod(str(tmp_path), 0o755)
    return str(tmp_path)


@root_only
def test_a_first_install_creates_the_directories_and_every_file_and_a_second_changes_nothing(base):
    path = os.path.join(base, "lib", "minibus_pki")
    assert library.install(path, SOURCES, check_mode=True)["written"] == sorted(SOURCES)
    assert not os.path.exists(os.path.join(base, "lib")), "check mode created something"

    result = library.install(path, SOURCES)
    assert result == {"changed": True, "written": sorted(SOURCES), "removed": []}
    for directory in (os.path.join(base, "lib"), path):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755
    tree = _tree(path)
    assert set(tree) == set(SOURCES)
    for name, data in SOURCES.items():
        assert tree[name] == (stat.S_IFREG, 0o644, 0, data)

    assert library.install(path, SOURCES) == {"changed": False, "written": [], "removed": []}
    assert _tree(path) == tree


@root_only
def test_a_changed_file_a_wrong_mode_and_a_link_are_put_right_and_stale_core_files_removed(base):
    path = os.path.join(base, "minibus_pki")
    library.install(path, SOURCES)
    outside = os.path.join(base, "outside.py")
    with open(outside, "wb") as handle:
        handle.write(b"not ours\n")
    with open(os.path.join(path, "a.py"), "wb") as handle:
        handle.write(b"A = 2\n")
    os.chmod(os.path.join(path, "b.py"), 0o666)
    os.unlink(os.path.join(path, "__init__.py"))
    os.symlink(outside, os.path.join(path, "__init__.py"))
    with open(os.path.join(path, "dropped.py"), "wb") as handle:
        handle.write(b"# an earlier version's file\n")
    with open(os.path.join(path, "notes.txt"), "wb") as handle:
        handle.write(b"kept: not a core file\n")
    os.mkdir(os.path.join(path, "__pycache__"))

    planned = library.install(path, SOURCES, check_mode=True)
    assert planned == {"changed": True, "written": ["__init__.py", "a.py", "b.py"], "removed": ["dropped.py"]}
    assert open(os.path.join(path, "a.py"), "rb").read() == b"A = 2\n", "check mode wrote"

    assert library.install(path, SOURCES) == planned
    tree = _tree(path)
    assert set(tree) == set(SOURCES) | {"notes.txt", "__pycache__"}
    for name, data in SOURCES.items():
        assert tree[name] == (stat.S_IFREG, 0o644, 0, data)
    assert open(outside, "rb").read() == b"not ours\n", "the link's target was written"


@root_only
@pytest.mark.parametrize("weak", ["group-writable", "world-writable"])
def test_a_directory_above_that_another_account_could_change_refuses_with_nothing_written(base, weak):
    shared = os.path.join(base, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o775 if weak == "group-writable" else 0o777)
    path = os.path.join(shared, "lib", "minibus_pki")
    with pytest.raises(MinibusError) as exc:
        library.install(path, SOURCES)
    assert "only root can write" in exc.value.message and shared in exc.value.message
    assert "Nothing was installed" in exc.value.message
    assert os.listdir(shared) == []


@root_only
def test_a_directory_owned_by_another_account_refuses(base):
    path = os.path.join(base, "minibus_pki")
    library.install(path, SOURCES)
    os.chown(path, 65534, 65534)
    with open(os.path.join(path, "a.py"), "wb") as handle:
        handle.write(b"changed by nobody\n")
    with pytest.raises(MinibusError) as exc:
        library.install(path, SOURCES)
    assert "only root can write" in exc.value.message
    assert open(os.path.join(path, "a.py"), "rb").read() == b"changed by nobody\n"


@root_only
@pytest.mark.parametrize("planted", ["link", "file"])
def test_a_link_or_a_file_in_the_place_of_the_directory_refuses(base, planted):
    target = os.path.join(base, "elsewhere")
    os.mkdir(target)
    path = os.path.join(base, "minibus_pki")
    if planted == "link":
        os.symlink(target, path)
    else:
        open(path, "w").close()
    with pytest.raises(MinibusError) as exc:
        library.install(path, SOURCES)
    assert "is not a directory" in exc.value.message
    assert os.listdir(target) == []


@pytest.mark.parametrize("name", ["../evil.py", "a/b.py", "notes.txt", ".hidden.py"])
def test_a_name_that_is_not_a_plain_core_file_name_refuses(tmp_path, name):
    with pytest.raises(MinibusError) as exc:
        library.install(str(tmp_path / "minibus_pki"), {name: b""})
    assert "not a plain .py file name" in exc.value.message
    assert os.listdir(str(tmp_path)) == []


def test_a_relative_path_refuses():
    with pytest.raises(MinibusError) as exc:
        library.install("lib/minibus_pki", SOURCES)
    assert "not absolute" in exc.value.message


def test_the_sources_are_the_core_files_byte_for_byte():
    from ansible_collections.minibus.pki.plugins.module_utils import errors, vault
    sources = library.core_sources((errors, vault))
    assert sorted(sources) == ["__init__.py", "errors.py", "vault.py"]
    for name in ("errors.py", "vault.py"):
        with open(os.path.join(CORE, name), "rb") as handle:
            assert sources[name] == handle.read()
    assert sources["__init__.py"] == b""


def test_the_module_ships_every_core_file():
    pytest.importorskip("ansible.module_utils.basic")
    from ansible_collections.minibus.pki.plugins.modules import core_library
    shipped = sorted(module.__name__.rsplit(".", 1)[-1] + ".py" for module in core_library.CORE_MODULES)
    assert shipped == sorted(name for name in os.listdir(CORE) if name.endswith(".py") and name != "__init__.py")
