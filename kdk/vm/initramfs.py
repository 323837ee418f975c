"""The guest's initramfs: busybox, kdk's stage-1 init, the modules it needs,
and kdk's own static programs for the guest (PROGRAMS).

The module list is a recipe (names only), plus the drivers of the VM's
emulated devices (kdk.vm.devices); the files and their order come from the
kernel's own modules.dep. The image is an uncompressed newc cpio (nothing
to decompress under TCG), cached per kernel, recipe and drivers, and
rebuilt only when one of them changes.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from .. import inguest
from ..errors import BuildFailed, KdkError, MissingDependency
from ..kernel import Kernel, builtin_modules, load_rounds, module_name, parse_modules_dep
from ..make import static_program

RECIPE = inguest.path("initramfs.modules")
STAGE1 = inguest.path("init")
BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))
# kdk's static programs for the guest's scripts, by their name in the
# image's /bin: kmsg_end moves a /dev/kmsg reader to the log's end
# (kdk.klog.kmsg.SKIP_OLD); kdk-insmod loads a module once (a load's
# insmod: kdk.modules.loading). The init copies them to the guest's
# /run/kdk: a program run from the project's or the host's 9p share is read
# again at each start (~80 ms under TCG).
PROGRAMS = {"kmsg_end": inguest.path("kmsg_end.c"), "kdk-insmod": inguest.path("insmod.c")}
FORMAT = "kdk-initramfs-5"  # modules/ROUND-NAME.ko, /dev/null


def recipe_modules(text: str) -> list[str]:
    """Module names of the recipe: one a line, '#' starts a comment."""
    return [w for line in text.splitlines() for w in line.split("#", 1)[0].split()]


def _is_dynamic(path: Path) -> bool:
    """True when an ELF executable needs a dynamic loader (has PT_INTERP)."""
    from elftools.elf.elffile import ELFFile

    with path.open("rb") as f:
        return any(seg["p_type"] == "PT_INTERP" for seg in ELFFile(f).iter_segments())


def find_busybox() -> Path:
    """A statically linked busybox (the initramfs has no libc)."""
    for path in BUSYBOX_CANDIDATES:
        if path.is_file() and not _is_dynamic(path):
            return path
    raise MissingDependency("static busybox not found: install the busybox-static package")


def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> bytes:
    """One newc record; fields are 8 hex digits, name and data padded to 4."""
    fields = [0, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def cpio_archive(entries: list[tuple[str, int, bytes, tuple[int, int]]]) -> bytes:
    """A newc archive of (name, mode, data, rdev) entries, with its trailer."""
    parts = [_cpio_entry(n, m, d, r) for n, m, d, r in entries]
    parts.append(_cpio_entry("TRAILER!!!", 0))
    return b"".join(parts)


def _module_bytes(path: Path) -> bytes:
    """A module's ELF image, decompressed when the distribution compressed it."""
    raw = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(raw)
    if path.name.endswith(".gz"):
        return gzip.decompress(raw)
    if path.name.endswith(".zst"):
        if not shutil.which("zstd"):
            raise MissingDependency(f"{path.name} is zstd-compressed: install the zstd package")
        out = subprocess.run(["zstd", "-dc", str(path)], capture_output=True)
        if out.returncode != 0:
            raise KdkError(f"zstd cannot decompress {path}: {out.stderr.decode().strip()}")
        return out.stdout
    return raw


def _resolved_modules(kernel: Kernel, extra: Sequence[str] = ()) -> list[list[Path]]:
    """The recipe's modules, `extra`, and their dependencies, in rounds (a
    module's dependencies in earlier rounds; see kdk.kernel.load_rounds)."""
    dep_file = kernel.modules_dir / "modules.dep"
    try:
        deps = parse_modules_dep(dep_file.read_text())
    except OSError as e:
        why = f"cannot read {dep_file} ({e.strerror}): run `depmod {kernel.release}`"
        raise MissingDependency(why) from None
    builtin_file = kernel.modules_dir / "modules.builtin"
    builtin = builtin_modules(builtin_file.read_text()) if builtin_file.exists() else set()
    wanted = recipe_modules(RECIPE.read_text()) + list(extra)
    return [[kernel.modules_dir / p for p in r] for r in load_rounds(deps, wanted, builtin)]


def _entries(
    kernel: Kernel, busybox: Path, extra: Sequence[str], programs: Path
) -> Iterator[tuple[str, int, bytes, tuple[int, int]]]:
    for d in ("bin", "dev", "proc", "sys", "mnt", "newroot", "modules"):
        yield d, stat.S_IFDIR | 0o755, b"", (0, 0)
    yield "dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)
    # under /dev once devtmpfs moved to the new root: the init's background
    # commands (busybox's sh gives them /dev/null for input) need it
    yield "dev/null", stat.S_IFCHR | 0o666, b"", (1, 3)
    yield "bin/busybox", stat.S_IFREG | 0o755, busybox.read_bytes(), (0, 0)
    yield "init", stat.S_IFREG | 0o755, STAGE1.read_bytes(), (0, 0)
    for name, source in PROGRAMS.items():
        try:
            exe = static_program(source, programs / name).read_bytes()
        except (BuildFailed, OSError):  # no gcc or static libc: the scripts use dd, busybox
            continue
        yield f"bin/{name}", stat.S_IFREG | 0o755, exe, (0, 0)
    # modules/ROUND-NAME.ko: the init loads each round's at once
    for r, paths in enumerate(_resolved_modules(kernel, extra)):
        for path in paths:
            name = f"modules/{r:02d}-{module_name(path.name)}.ko"
            yield name, stat.S_IFREG | 0o644, _module_bytes(path), (0, 0)


def cache_key(kernel: Kernel, busybox: Path, extra: Sequence[str] = ()) -> str:
    """Changes when the kernel, busybox, the stage-1 init, the recipe or the
    extra modules change."""
    h = hashlib.sha256(FORMAT.encode())
    for path in (kernel.image, kernel.modules_dir / "modules.dep", busybox):
        st = path.stat()
        h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(STAGE1.read_bytes())
    for source in PROGRAMS.values():
        h.update(source.read_bytes())
    h.update(RECIPE.read_bytes())
    h.update(" ".join(extra).encode())
    return h.hexdigest()[:16]


def stale(cache_dir: Path, release: str, variant: str) -> list[Path]:
    """The cached images of `release` that an image of `variant` replaces:
    those of the same variant, and those named before images had one
    (initramfs-RELEASE-KEY.cpio)."""
    prefix = f"initramfs-{release}-"
    return [
        p
        for p in cache_dir.glob(f"{prefix}*.cpio")
        if p.name[len(prefix) : -len(".cpio")].rpartition("-")[0] in (variant, "")
    ]


def initramfs(kernel: Kernel, cache_dir: Path, extra: Sequence[str] = ()) -> Path:
    """The cached initramfs for `kernel`, with the `extra` modules (the
    drivers of emulated devices: insmod from memory is quicker than the
    guest's modprobe over 9p), building it first if needed. One image is
    kept per kernel and set of extra modules."""
    busybox = find_busybox()
    variant = "+".join(extra) or "base"
    key = cache_key(kernel, busybox, extra)
    target = cache_dir / f"initramfs-{kernel.release}-{variant}-{key}.cpio"
    if target.exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    for old in stale(cache_dir, kernel.release, variant):
        if old != target:  # (another `up` may have just written it)
            old.unlink(missing_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.tmp")  # VMs booting at once each write theirs
    tmp.write_bytes(cpio_archive(list(_entries(kernel, busybox, extra, cache_dir / "programs"))))
    tmp.replace(target)
    return target
