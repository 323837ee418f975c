"""Finding module folders anywhere in a project: by folder, by module name, by path."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdk.cli import main
from kdk.errors import UnknownModule
from kdk.project import ModuleSource, find_module, known_modules, obj_m_names, project_root

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
    with pytest.raises(UnknownModule, match="not a module folder"):
        find_module(str(tmp_path), PROJECT)


LKMPG_STYLE = """obj-m += hello-1.o
obj-m += vinput.o \\
\tvkbd.o  # the keyboard needs vinput
obj-m += $(EXTRA).o
PWD := $(CURDIR)

all:
\t$(MAKE) -C /lib/modules/$(shell uname -r)/build M=$(PWD) modules
"""


def test_obj_m_lines_name_the_modules() -> None:
    assert obj_m_names(LKMPG_STYLE) == ["hello-1", "vinput", "vkbd"]
    assert obj_m_names("obj-m:=a.o\nobj-$(CONFIG_X) += b.o\n# obj-m := c.o\n") == ["a"]


def make_project(root: Path) -> None:
    """A user's repository: module folders at several depths, and folders
    that are not modules or are not searched."""
    files = {
        "examples/Makefile": LKMPG_STYLE,
        "examples/vkbd.c": 'MODULE_DESCRIPTION("Emulate a keyboard");\n',
        "drivers/net/mynic/Kbuild": "obj-m := mynic.o\n",
        "drivers/net/mynic/sub/Kbuild": "obj-y := part.o\n",  # a part of mynic's build
        "tools/Makefile": "all:\n\tcc -o tool tool.c\n",  # user space: not a module
        ".hidden/Kbuild": "obj-m := h.o\n",
        "venv/lib/Kbuild": "obj-m := v.o\n",
        "env/pyvenv.cfg": "",
        "env/Kbuild": "obj-m := e.o\n",
        "node_modules/x/Kbuild": "obj-m := x.o\n",
        "a/b/c/d/e/Kbuild": "obj-m := deep.o\n",  # deeper than searched
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_module_folders_are_found_anywhere_in_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(tmp_path)
    found = known_modules(tmp_path)
    assert [m.path.relative_to(tmp_path) for m in found] == [
        Path("drivers/net/mynic"),
        Path("examples"),
    ]
    examples = find_module("examples", tmp_path)
    assert examples.module_names() == ["hello-1", "vinput", "vkbd"]
    assert examples.description("vkbd") == "Emulate a keyboard"
    # a module by the name in its obj-m line ('-' and '_' are the same to the kernel)
    assert find_module("vkbd", tmp_path) == ModuleSource("examples", tmp_path / "examples", "vkbd")
    assert find_module("hello_1", tmp_path).module == "hello-1"
    assert find_module("examples/vkbd", tmp_path).module == "vkbd"
    assert find_module("mynic", tmp_path).path == tmp_path / "drivers/net/mynic"
    monkeypatch.chdir(tmp_path / "examples")
    assert find_module(".", tmp_path).path == tmp_path / "examples"
    monkeypatch.chdir(tmp_path / "drivers")  # FOLDER/MODULE from the current folder
    assert find_module("../examples/vinput", tmp_path).module == "vinput"
    with pytest.raises(UnknownModule, match="not a module folder"):
        find_module("../tools", tmp_path)


def test_a_name_in_two_folders_asks_for_a_path(tmp_path: Path) -> None:
    for folder in ("a/same", "b/same"):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "Kbuild").write_text("obj-m := same.o\n")
    with pytest.raises(UnknownModule, match=r"in several folders \(a/same, b/same\)"):
        find_module("same", tmp_path)


def test_the_project_root_can_be_the_module_folder(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text(LKMPG_STYLE)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "Kbuild").write_text("obj-m := sub.o\n")
    assert known_modules(tmp_path) == [ModuleSource(tmp_path.name, tmp_path)]


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


def test_kdk_list_shows_folders_and_the_modules_of_a_many_module_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_project(tmp_path)
    monkeypatch.setenv("KDK_PROJECT", str(tmp_path))
    assert main(["list"]) == 0
    assert [ln.split() for ln in capsys.readouterr().out.splitlines()] == [
        ["drivers/net/mynic"],
        ["examples", "3", "modules"],
        ["hello-1"],
        ["vinput"],
        ["vkbd", "Emulate", "a", "keyboard"],
    ]
