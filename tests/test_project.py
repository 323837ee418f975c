"""Finding modules: by name under kmods/ and drivers/, or by path."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdk.errors import UnknownModule
from kdk.project import find_module, known_modules, project_root

from .conftest import PROJECT


def test_hello_is_known_with_its_description() -> None:
    mods = {m.name: m for m in known_modules(PROJECT)}
    assert mods["hello"].path == PROJECT / "kmods" / "hello"
    assert mods["hello"].description() == "Hello world with a module parameter"


def test_unknown_module_lists_what_exists() -> None:
    with pytest.raises(UnknownModule, match=r"unknown module 'nosuch'; known modules: .*hello"):
        find_module("nosuch", PROJECT)


def test_any_folder_with_a_kbuild_is_a_module(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "Kbuild").write_text("obj-m := mine.o\n")
    m = find_module(str(tmp_path / "mine"), PROJECT)
    assert (m.name, m.path, m.description()) == ("mine", tmp_path / "mine", "")
    with pytest.raises(UnknownModule, match="not a folder with a Kbuild or Makefile"):
        find_module(str(tmp_path), PROJECT)


def test_project_is_found_from_the_folder_you_work_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KDK_PROJECT", raising=False)
    deep = tmp_path / "repo" / "drivers" / "mine"
    deep.mkdir(parents=True)
    assert project_root(deep) == deep  # nothing marks a project: the folder itself
    (tmp_path / "repo" / ".git").mkdir()
    assert project_root(deep) == tmp_path / "repo"  # the git work tree's top
    (tmp_path / "repo" / "drivers" / "kdk.toml").write_text("")
    assert project_root(deep) == tmp_path / "repo" / "drivers"  # a kdk.toml is nearer
    (deep / ".kdk").mkdir()
    assert project_root(deep) == deep  # so is a state folder
    monkeypatch.setenv("KDK_PROJECT", str(tmp_path))
    assert project_root(deep) == tmp_path
