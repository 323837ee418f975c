"""Where things are: the project folder, the state folder, and its modules."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UnknownModule
from .kernel import module_name

CONFIG_FILE = "kdk.toml"


def project_root(start: Path | None = None) -> Path:
    """The project kdk works on, found from `start` (the current folder):
    $KDK_PROJECT if set; else the nearest folder, `start` or above, that
    holds a `.kdk/` state folder or a kdk.toml; else the top of the git
    work tree `start` is in; else `start` itself."""
    env = os.environ.get("KDK_PROJECT")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / ".kdk").is_dir() or (folder / CONFIG_FILE).is_file():
            return folder
    for folder in (here, *here.parents):
        if (folder / ".git").exists():
            return folder
    return here


def state_root(project: Path | None = None) -> Path:
    """Where kdk keeps its state (VM, caches, build stamps): $KDK_STATE or .kdk/."""
    env = os.environ.get("KDK_STATE")
    if env:
        return Path(env).resolve()
    return (project or project_root()) / ".kdk"


def vm_name() -> str:
    """Which VM of the state folder commands talk to: $KDK_VM or "default"."""
    return os.environ.get("KDK_VM") or "default"


# Folders never searched for modules: virtualenvs (also any folder holding a
# pyvenv.cfg), JavaScript dependencies, Python caches; hidden folders neither.
SKIPPED_FOLDERS = {"node_modules", "__pycache__", "venv", "site-packages"}
SEARCH_DEPTH = 4  # levels below the project root searched for module folders
OBJ_M = re.compile(r"^\s*obj-m\s*[:+?]?=(.*)$", re.M)


def obj_m_names(makefile: str) -> list[str]:
    """The modules a Kbuild/Makefile text lists in `obj-m` lines, as written
    (`obj-m += hello-1.o` gives "hello-1"); names built from variables are
    left out."""
    text = makefile.replace("\\\n", " ")
    names: list[str] = []
    for m in OBJ_M.finditer(text):
        for word in m.group(1).split("#", 1)[0].split():
            if word.endswith(".o") and "$" not in word and word[:-2] not in names:
                names.append(word[:-2])
    return names


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class ModuleSource:
    """A folder that Kbuild can build: one of kdk's or any user's."""

    name: str  # what `kdk list` shows; the folder's name
    path: Path  # absolute folder with the Kbuild or Makefile
    module: str = ""  # the one of its modules a name given by the user picked

    def module_names(self) -> list[str]:
        """The modules its Kbuild and Makefile list in `obj-m` lines."""
        names = obj_m_names(_read(self.path / "Kbuild")) + obj_m_names(
            _read(self.path / "Makefile")
        )
        return list(dict.fromkeys(names))

    def description(self, module: str = "") -> str:
        """The MODULE_DESCRIPTION of its sources (of `module`.c when given),
        or '' when there is none."""
        sources = [self.path / f"{module}.c"] if module else sorted(self.path.glob("*.c"))
        for c in sources:
            m = re.search(r'MODULE_DESCRIPTION\(\s*"((?:[^"\\]|\\.)*)"', _read(c))
            if m:
                return m.group(1)
        return ""


def is_module_folder(path: Path) -> bool:
    """True when `path` has a Kbuild, or a Makefile that names obj-m (a
    Makefile for user-space programs alone does not make a module folder)."""
    return (path / "Kbuild").is_file() or bool(OBJ_M.search(_read(path / "Makefile")))


def _searched(folder: Path) -> bool:
    name = folder.name
    return not (
        name.startswith(".")
        or name in SKIPPED_FOLDERS
        or folder.is_symlink()
        or (folder / "pyvenv.cfg").exists()
    )


def known_modules(project: Path | None = None) -> list[ModuleSource]:
    """The module folders of the project: the root itself or folders up to
    SEARCH_DEPTH levels below it, sorted by path. A module folder's own
    subfolders are part of its build and are not searched."""
    found: list[ModuleSource] = []

    def walk(folder: Path, depth: int) -> None:
        if is_module_folder(folder):
            found.append(ModuleSource(folder.name, folder))
            return
        if depth == SEARCH_DEPTH:
            return
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and _searched(p))
        except OSError:
            return
        for child in children:
            walk(child, depth + 1)

    walk((project or project_root()).resolve(), 0)
    return found


def names_a_path(spec: str) -> bool:
    """Whether a module `spec` is a path (`.`, `./x`, `a/b`) rather than a name."""
    return os.sep in spec or spec.startswith(".")


def find_module(spec: str, project: Path | None = None) -> ModuleSource:
    """A module folder named by its folder name, or the folder of the module
    named `spec` in an `obj-m` line, or given as a path (`.` is the current
    folder; a relative path is tried from the current folder, then from the
    project root), or as FOLDER/MODULE for one module of a folder."""
    root = project or project_root()
    if names_a_path(spec):
        path = Path(spec)
        if not path.exists() and not path.parent.is_dir():
            path = root / spec
        if path.is_dir() and is_module_folder(path):
            return ModuleSource(path.resolve().name, path.resolve())
        folder = path.parent.resolve()  # FOLDER/MODULE: one module of a folder
        if is_module_folder(folder):
            modules = ModuleSource(folder.name, folder).module_names()
            if module_name(path.name) in map(module_name, modules):
                return ModuleSource(folder.name, folder, path.name)
        raise UnknownModule(
            f"{spec}: not a module folder (no Kbuild, and no Makefile naming obj-m)"
        )
    known = known_modules(root)
    for matches in (
        [m for m in known if m.name == spec],
        [
            ModuleSource(m.name, m.path, n)
            for m in known
            for n in m.module_names()
            if module_name(n) == module_name(spec)
        ],
    ):
        if len(matches) == 1:
            return matches[0]
        if matches:
            where = ", ".join(str(m.path.relative_to(root)) for m in matches)
            raise UnknownModule(f"{spec!r} is in several folders ({where}): give its path")
    names = ", ".join(m.name for m in known) or "none"
    raise UnknownModule(f"unknown module {spec!r}; known modules: {names}")
