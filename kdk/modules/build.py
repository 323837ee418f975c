"""Building modules with Kbuild on the host, against the guest's kernel.

A build runs only when a source file, the file set, or the target kernel
changed since the last successful one (kdk keeps a stamp per folder), so an
unchanged `kdk load` costs a few stat() calls instead of a Kbuild run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import BuildFailed, KdkError, MissingDependency
from ..kernel import Kernel
from ..project import ModuleSource

SOURCE_SUFFIXES = (".c", ".h", ".S", ".lds")
SOURCE_NAMES = ("Kbuild", "Makefile", "Kconfig")
# make's directory chatter, Kbuild's progress lines and a note every module
# built without a vmlinux gets: none of it says anything about the code.
NOISE = re.compile(
    r"^(make(\[\d+\])?: (Entering|Leaving) directory|\s*(CC|LD|BTF|MODPOST|AR)\b"
    r"|Skipping BTF generation)"
)


@dataclass(frozen=True)
class Built:
    """The outcome of `build()`."""

    modules: list[Path]  # the .ko files, in modules.order order
    rebuilt: bool  # False when the stamp said nothing changed
    output: str  # what Kbuild printed that matters (warnings), "" if none

    def main_module(self, name: str) -> Path:
        return main_module(self.modules, name)


def main_module(kos: list[Path], name: str) -> Path:
    """Of a folder's modules, the .ko named like the folder, else the first."""
    return next((ko for ko in kos if ko.name == f"{name}.ko"), kos[0])


def _is_source(path: Path) -> bool:
    name = path.name
    if name.endswith(".mod.c"):
        return False
    return name in SOURCE_NAMES or name.endswith(SOURCE_SUFFIXES)


def source_digest(folder: Path, kernel: Kernel) -> str:
    """Changes when any source under `folder` or the target kernel changes."""
    h = hashlib.sha256(kernel.release.encode())
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if _is_source(path):
                st = path.stat()
                h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def read_modules_order(folder: Path) -> list[Path]:
    """The modules Kbuild built, from its modules.order (.o or .ko entries)."""
    order = folder / "modules.order"
    if not order.exists():
        return []
    kos = []
    for line in order.read_text().split():
        path = Path(line.removesuffix(".o").removesuffix(".ko") + ".ko")
        kos.append(path if path.is_absolute() else folder / path)
    return kos


def compiler_output(text: str) -> str:
    """Kbuild's output without make's directory chatter and known noise."""
    return "\n".join(ln for ln in text.splitlines() if not NOISE.match(ln))


def build(src: ModuleSource, kernel: Kernel, stamps: Path, *, force: bool = False) -> Built:
    """Build `src` for `kernel` unless its stamp says it is up to date."""
    stamp = stamps / (hashlib.sha1(str(src.path).encode()).hexdigest() + ".json")
    digest = source_digest(src.path, kernel)
    try:
        old = json.loads(stamp.read_text())
    except (OSError, ValueError):
        old = {}
    kos = [Path(p) for p in old.get("modules", [])]
    if not force and old.get("digest") == digest and kos and all(k.exists() for k in kos):
        return Built(kos, False, "")
    if not kernel.build_dir.is_dir():
        raise MissingDependency(
            f"no headers for {kernel.release}: install linux-headers-{kernel.release}"
        )
    argv = ["make", "-C", str(kernel.build_dir), f"M={src.path}", f"-j{os.cpu_count() or 1}",
            "modules"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    except FileNotFoundError:
        raise MissingDependency("make not found: install the build-essential package") from None
    output = compiler_output(proc.stdout + proc.stderr).strip()
    if proc.returncode != 0:
        raise BuildFailed(f"{src.name} does not compile (compiler errors above)", output)
    kos = read_modules_order(src.path)
    if not kos:
        raise KdkError(f"{src.name}: Kbuild built no module (is obj-m set in its Kbuild?)")
    stamps.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"digest": digest, "modules": [str(k) for k in kos]}) + "\n")
    return Built(kos, True, output)
