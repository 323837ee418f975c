"""Building modules on the host, against the guest's kernel.

A folder whose Makefile drives Kbuild itself (`$(MAKE) -C $(KDIR) M=...`)
is built the way its author builds it: its own `make`, run in the folder,
told where the guest kernel's build tree is under the names such Makefiles
use. Any other module folder (a Kbuild, or a Makefile of obj-m lines only)
gets `make -C <build tree> M=<folder> modules`.

A build runs only when a source file, the file set, a file outside the
folder that the last build read (a header in a sibling include folder), or
the target kernel changed since the last successful one (kdk keeps a stamp
per folder and kernel), so an unchanged `kdk load` costs a few stat() calls
instead of a Kbuild run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BuildFailed, KdkError, MissingDependency, UnknownModule
from ..kernel import Kernel, module_name, user_cache
from ..locks import file_lock
from ..make import BUILD_TIMEOUT, Make, host_make
from ..project import ModuleSource
from .info import modinfo

SOURCE_SUFFIXES = (".c", ".h", ".S", ".lds")
SYSTEM = Path("/usr")  # kernel headers and the compiler's: they change with the release
SOURCE_NAMES = ("Kbuild", "Makefile", "Kconfig")
# make's directory chatter, Kbuild's progress lines and a note every module
# built without a vmlinux gets: none of it says anything about the code.
NOISE = re.compile(
    r"^(make(\[\d+\])?: (Entering|Leaving) directory|\s*(CC|LD|BTF|MODPOST|AR)\b"
    r"|Skipping BTF generation)"
)
# A Makefile line that runs Kbuild on a folder: `make -C <tree> M=<folder>`
# (or the older SUBDIRS=).
DRIVES_KBUILD = re.compile(r"^\t.*-C\s*\S+.*\b(M|SUBDIRS)=", re.M)
# The variables out-of-tree Makefiles take the kernel build tree and the
# release from; all are set on the command line of the folder's own make.
TREE_VARIABLES = ("KDIR", "KERNELDIR", "KERNEL_DIR", "KSRC", "KERNEL_SRC")
RELEASE_VARIABLES = ("KVER", "KVERSION")


@dataclass(frozen=True)
class Built:
    """The outcome of `build()`."""

    modules: list[Path]  # the .ko files, in modules.order order
    rebuilt: bool  # False when the stamp said nothing changed
    output: str  # what Kbuild printed that matters (warnings), "" if none
    argv: tuple[str, ...] = ()  # the make command that ran (none when up to date)
    cwd: Path | None = None  # where it ran: the folder for its own make

    def main_module(self, name: str, named: bool = False) -> Path:
        return main_module(self.modules, name, named)

    def how(self) -> str:
        """What was done, for `-v`: which make ran, where, with which argv."""
        if not self.rebuilt:
            return "sources unchanged since the last build: make not run"
        if self.cwd is not None:
            return (
                "its own Makefile drives Kbuild: ran its make in "
                f"{self.cwd}: {shlex.join(self.argv)}"
            )
        return f"ran Kbuild: {shlex.join(self.argv)}"


def main_module(kos: list[Path], name: str, named: bool = False) -> Path:
    """Of a folder's modules, the one called `name` (a module or the folder's
    name), else the only one unless `name` is one of the folder's modules
    (`named`) that this build did not make; a folder of several needs a
    module's name."""
    for ko in kos:
        if module_name(ko.name) == module_name(name):
            return ko
    if named:
        made = ", ".join(ko.name.removesuffix(".ko") for ko in kos) or "nothing"
        raise UnknownModule(
            f"{name} was not built for this kernel (its folder's build made {made}); "
            "its Kbuild builds it only with some kernel option, e.g. CONFIG_KUNIT"
        )
    if len(kos) == 1:
        return kos[0]
    names = ", ".join(ko.name.removesuffix(".ko") for ko in kos)
    raise UnknownModule(f"{name} builds {len(kos)} modules ({names}): name one of them")


def _is_source(path: Path) -> bool:
    name = path.name
    if name.endswith(".mod.c"):
        return False
    return name in SOURCE_NAMES or name.endswith(SOURCE_SUFFIXES)


def source_digest(folder: Path, kernel: Kernel, outside: Sequence[Path] = ()) -> str:
    """Changes when any source under `folder`, any of the `outside` files
    (see outside_sources) or the target kernel changes: its release, or its
    build (a kernel kdk builds keeps its release when built again, and a
    module built for the last build has BTF the new one refuses)."""
    h = hashlib.sha256(kernel.release.encode())
    h.update(kernel_build_id(kernel).encode())
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if _is_source(path):
                st = path.stat()
                h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    for path in outside:
        h.update(_file_state(path).encode())
    return h.hexdigest()


def _file_state(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return f"{path}: gone\n"
    return f"{path}:{st.st_size}:{st.st_mtime_ns}\n"


def kernel_build_id(kernel: Kernel) -> str:
    """Changes with each build of the kernel's tree: its Module.symvers,
    which every kernel build writes again."""
    return _file_state(kernel.build_dir / "Module.symvers")


def outside_sources(folder: Path) -> list[Path]:
    """The files a build of `folder` read from outside it and outside the
    system's folders (a header in a sibling include folder, say), from the
    dependency lists Kbuild keeps in its .*.cmd files."""
    found = set()
    for cmd in folder.rglob(".*.cmd"):
        for line in cmd.read_text(errors="replace").splitlines():
            word = line.strip().removesuffix("\\").strip()
            if word.startswith("/") and " " not in word:
                path = Path(os.path.normpath(word))
                if not path.is_relative_to(folder) and not path.is_relative_to(SYSTEM):
                    found.add(path)
    return sorted(found)


def drives_kbuild(folder: Path) -> bool:
    """Whether the folder's Makefile runs Kbuild itself (`-C <tree> M=...`)."""
    try:
        text = (folder / "Makefile").read_text(errors="replace")
    except OSError:
        return False
    return bool(DRIVES_KBUILD.search(text.replace("\\\n", " ")))


def make_argv(folder: Path, kernel: Kernel) -> tuple[list[str], Path | None]:
    """The make command for `folder` and the folder it runs in (None: any)."""
    jobs = f"-j{os.cpu_count() or 1}"
    if drives_kbuild(folder):
        tree = [f"{v}={kernel.build_dir}" for v in TREE_VARIABLES]
        release = [f"{v}={kernel.release}" for v in RELEASE_VARIABLES]
        return ["make", "-s", jobs, *tree, *release], folder
    return ["make", "-C", str(kernel.build_dir), f"M={folder}", jobs, "modules"], None


def built_modules(folder: Path) -> list[Path]:
    """The modules a build made: from the modules.order files Kbuild wrote
    (the folder's own first; Kbuild writes them before it links, so a
    failed build's lists name modules it did not make), else every .ko in
    the folder."""
    orders = sorted(folder.rglob("modules.order"), key=lambda p: (p.parent != folder, p))
    kos = [ko for order in orders for ko in read_modules_order(order.parent) if ko.is_file()]
    return list(dict.fromkeys(kos)) or sorted(folder.glob("*.ko"))


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


def keep(kos: list[Path], kernel: Kernel, folder: Path) -> list[Path]:
    """Copies of freshly built `kos` in `folder`, each checked to be built for
    `kernel` (a build of the folder for another kernel at the same moment
    would show here) and replaced whole (a guest may be loading the old one)."""
    folder.mkdir(parents=True, exist_ok=True)
    kept = []
    for ko in kos:
        built_for = modinfo(ko).get("vermagic", "").split(" ", 1)[0]
        if built_for != kernel.release:
            raise BuildFailed(
                f"{ko} came out built for {built_for or 'no kernel'}, not "
                f"{kernel.release}: another build of its folder ran at the "
                "same time? Build again"
            )
        tmp = folder / f".{ko.name}.tmp"
        shutil.copyfile(ko, tmp)
        tmp.replace(folder / ko.name)
        kept.append(folder / ko.name)
    return kept


def build(
    src: ModuleSource,
    kernel: Kernel,
    stamps: Path,
    *,
    force: bool = False,
    make: Make | None = None,
) -> Built:
    """Build `src` for `kernel` unless its stamp says it is up to date; on the
    host, or with `make` (which has the kernel's build tree at the same path).

    Kbuild writes into the folder; the .ko files are then kept per kernel
    (`stamps/<release>/<folder>-<hash>/`), and those copies are what a guest
    loads: a build of the same folder for another kernel (a second VM, a
    kernel matrix) does not replace them, and going back to a kernel needs
    no rebuild. Each kernel has its own stamp. One build of a folder runs
    at a time, whatever its VM or kernel (others wait: pytest-xdist
    workers, two VMs, kdk test --kernels): the lock is in the user's cache."""
    key = _folder_key(src.path)
    busy = f"another kdk kept building {src.name} for over {BUILD_TIMEOUT:g} s"
    with file_lock(build_lock(src.path), BUILD_TIMEOUT + 30, busy):
        return _build(src, kernel, stamps, key, force, make)


def _folder_key(folder: Path) -> str:
    """What names a module folder's stamps, kept builds and lock."""
    return hashlib.sha1(str(folder).encode()).hexdigest()


def build_lock(folder: Path) -> Path:
    """The lock that one build of `folder` holds, whatever its VM or kernel."""
    return user_cache() / "locks" / f"build-{_folder_key(folder)}.lock"


def _stamp(stamps: Path, key: str, release: str) -> tuple[Path, dict[str, Any]]:
    """The stamp of a folder's build for the kernel `release`: its path, and
    what it records ({} when there is none)."""
    stamp = stamps / f"{key}-{release}.json"
    try:
        return stamp, json.loads(stamp.read_text())
    except (OSError, ValueError):
        return stamp, {}


def _kept(record: dict[str, Any]) -> list[Path]:
    """The .ko files a stamp records, if every one is still there, else []."""
    kos = [Path(p) for p in record.get("modules", [])]
    return kos if kos and all(k.exists() for k in kos) else []


def kept_modules(src: ModuleSource, release: str, stamps: Path) -> list[Path]:
    """The .ko files of the last build of `src` for the kernel `release`
    (kept per kernel: see build), [] when there is none; nothing is built."""
    return _kept(_stamp(stamps, _folder_key(src.path), release)[1])


def _build(
    src: ModuleSource, kernel: Kernel, stamps: Path, key: str, force: bool, make: Make | None
) -> Built:
    stamp, old = _stamp(stamps, key, kernel.release)
    digest = source_digest(src.path, kernel, [Path(p) for p in old.get("outside", [])])
    kos = _kept(old)
    if not force and old.get("digest") == digest and kos:
        return Built(kos, False, "")
    if make is None and not kernel.build_dir.is_dir():
        raise MissingDependency(
            f"no headers for {kernel.release}: install linux-headers-{kernel.release}"
        )
    if old.get("kernel") not in (None, kernel_build_id(kernel)):
        # Kbuild relinks an external module only when its own objects change,
        # not when the kernel it links against was built again: its BTF would
        # then name the last build's types and the new kernel refuse it
        # ("failed to validate module BTF: -22"). Only then: otherwise the
        # .ko of the folder's build for another kernel is relinked for nothing.
        for ko in built_modules(src.path):
            ko.unlink(missing_ok=True)
    argv, cwd = make_argv(src.path, kernel)
    try:
        code, text = (make or host_make)(argv, cwd)
    except FileNotFoundError:
        raise MissingDependency("make not found: install the build-essential package") from None
    except subprocess.TimeoutExpired:
        raise BuildFailed(f"{src.name}: the build did not finish in {BUILD_TIMEOUT:g} s") from None
    output = compiler_output(text).strip()
    if code != 0:
        raise BuildFailed(f"{src.name} does not compile (compiler errors above)", output)
    kos = built_modules(src.path)
    if not kos:
        raise KdkError(f"{src.name}: the build made no module (is obj-m set in its Kbuild?)")
    kos = keep(kos, kernel, stamps / kernel.release / f"{src.path.name}-{key[:8]}")
    outside = outside_sources(src.path)
    record = {
        "digest": source_digest(src.path, kernel, outside),
        "kernel": kernel_build_id(kernel),
        "modules": [str(k) for k in kos],
        "outside": [str(p) for p in outside],
    }
    stamps.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps(record) + "\n")
    return Built(kos, True, output, tuple(argv), cwd)
