"""Finding modules: by name under kmods/ and drivers/, or by path."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdk.errors import UnknownModule
from kdk.project import find_module, known_modules

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
