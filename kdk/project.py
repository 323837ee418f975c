"""Where things are: the project folder, the state folder, and its modules."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UnknownModule

MODULE_FOLDERS = ("kmods", "drivers")


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


@dataclass(frozen=True)
class ModuleSource:
    """A folder that Kbuild can build: one of kdk's or any user's."""

    name: str  # what `kdk list` shows; the folder's name
    path: Path  # absolute folder with the Kbuild or Makefile

    def description(self) -> str:
        """The MODULE_DESCRIPTION of its sources, or '' when there is none."""
        for c in sorted(self.path.glob("*.c")):
            m = re.search(
                r'MODULE_DESCRIPTION\(\s*"((?:[^"\\]|\\.)*)"', c.read_text(errors="replace")
            )
            if m:
                return m.group(1)
        return ""


def is_module_folder(path: Path) -> bool:
    """True when `path` is a folder with a Kbuild or a Makefile."""
    return (path / "Kbuild").is_file() or (path / "Makefile").is_file()


def known_modules(project: Path | None = None) -> list[ModuleSource]:
    """The modules under kmods/ and drivers/, in that order, sorted by name."""
    root = project or project_root()
    found = []
    for folder in MODULE_FOLDERS:
        for path in sorted((root / folder).glob("*")):
            if path.is_dir() and is_module_folder(path):
                found.append(ModuleSource(path.name, path))
    return found


def find_module(spec: str, project: Path | None = None) -> ModuleSource:
    """A module named by its folder under kmods/ or drivers/, or given as a path."""
    path = Path(spec)
    if os.sep in spec or spec.startswith("."):
        if path.is_dir() and is_module_folder(path):
            return ModuleSource(path.resolve().name, path.resolve())
        raise UnknownModule(f"{spec}: not a folder with a Kbuild or Makefile")
    known = known_modules(project)
    for m in known:
        if m.name == spec:
            return m
    names = ", ".join(m.name for m in known) or "none"
    raise UnknownModule(f"unknown module {spec!r}; known modules: {names}")
