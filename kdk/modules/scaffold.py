"""`kdk new`: a new module folder from the templates shipped with kdk.

A folder holds a Kbuild (what to build), a thin Makefile for building by
hand, the commented C source and a test that kdk runs in the VM. The
templates are the files in templates/, with @NAME@ standing for the name.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import KdkError
from ..project import is_module_folder

TEMPLATES = Path(__file__).resolve().parent / "templates"
# The name becomes the module's name and a prefix of C identifiers; the
# kernel keeps module names shorter than 56 bytes.
VALID_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,54}")


def new_module(name: str, project: Path, char: bool = False) -> list[Path]:
    """Create the folder `name` (a path: from the current folder when that
    is in `project`, else from the project's top) with a module named like
    it (a character device with `char`); the files made. Refuses a folder
    that exists, and one inside a module folder (kdk does not search those
    for modules)."""
    here = Path.cwd()
    folder = ((here if here.is_relative_to(project) else project) / name).resolve()
    name = folder.name
    for above in folder.parents:
        if not above.is_relative_to(project):
            break
        if is_module_folder(above):
            raise KdkError(
                f"{above} is a module folder, and kdk does not look for modules inside one: "
                "make the new one elsewhere"
            )
    if not VALID_NAME.fullmatch(name):
        raise KdkError(
            f"{name!r} cannot name a module: use letters, digits and _ "
            "(not first a digit), at most 55"
        )
    if folder.exists():
        raise KdkError(f"{folder} exists: kdk new only makes a new folder")
    kind = "char" if char else "module"
    files = {
        "Kbuild": "Kbuild.in",
        "Makefile": "Makefile.in",
        f"{name}.c": f"{kind}.c.in",
        f"test_{name}.py": f"test_{kind}.py.in",
    }
    folder.mkdir(parents=True)
    made = []
    for target, template in files.items():
        path = folder / target
        path.write_text((TEMPLATES / template).read_text().replace("@NAME@", name))
        made.append(path)
    return made
