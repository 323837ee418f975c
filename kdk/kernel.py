"""Kernels on the host, their modules.dep, and what a .ko says about itself."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .errors import KdkError, MissingDependency, VermagicMismatch

BOOT = Path("/boot")
MODULES = Path("/lib/modules")
KO_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")


@dataclass(frozen=True)
class Kernel:
    """A kernel the guest can boot: its image and its module tree on the host."""

    release: str  # what `uname -r` prints in the guest
    image: Path  # the bzImage QEMU boots
    modules_dir: Path  # /lib/modules/<release>: modules.dep and the .ko files

    @property
    def build_dir(self) -> Path:
        """The Kbuild tree (kernel headers) out-of-tree modules build against."""
        return self.modules_dir / "build"


def _version_key(release: str) -> list[tuple[int, str]]:
    """Sort key that orders 6.1.0-9 before 6.1.0-10."""
    return [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.-]", release)]


def host_kernels(boot: Path = BOOT, modules: Path = MODULES) -> list[Kernel]:
    """Kernels that have an image in /boot and headers installed, newest first."""
    found = []
    for image in boot.glob("vmlinuz-*"):
        release = image.name.removeprefix("vmlinuz-")
        k = Kernel(release, image, modules / release)
        if k.build_dir.is_dir():
            found.append(k)
    return sorted(found, key=lambda k: _version_key(k.release), reverse=True)


def select_kernel(spec: str | None = None) -> Kernel:
    """The kernel named by `spec` (a release or an image path), or the newest."""
    kernels = host_kernels()
    if spec is None:
        if not kernels:
            raise MissingDependency(
                "no kernel with headers on this host: install linux-image-amd64 "
                "and linux-headers-amd64 (make demo/test do it)"
            )
        return kernels[0]
    for k in kernels:
        if spec in (k.release, str(k.image)):
            return k
    path = Path(spec)
    if path.is_file():
        release = path.name.removeprefix("vmlinuz-")
        return Kernel(release, path, MODULES / release)
    have = ", ".join(k.release for k in kernels) or "none"
    raise KdkError(f"no kernel {spec!r} with headers on this host (have: {have})")


def module_name(path: str) -> str:
    """The name the kernel uses for a module file: no folder, suffix, or '-'."""
    name = path.rsplit("/", 1)[-1]
    for suffix in KO_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep as {name: (relative path, [relative paths it depends on])}."""
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        path, sep, rest = line.partition(":")
        if sep:
            deps[module_name(path)] = (path, rest.split())
    return deps


def load_order(
    deps: dict[str, tuple[str, list[str]]], wanted: list[str], builtin: set[str]
) -> list[str]:
    """Module paths to insmod, dependencies first, each once, for `wanted`.

    Built-in modules are skipped; a name neither built in nor in modules.dep
    is an error (the kernel cannot provide it).
    """
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name in builtin:
            return
        seen.add(name)
        if name not in deps:
            raise MissingDependency(f"kernel module {name} is neither built in nor in modules.dep")
        path, needs = deps[name]
        for dep in needs:
            visit(module_name(dep))
        order.append(path)

    for name in wanted:
        visit(module_name(name))
    return order


def builtin_modules(text: str) -> set[str]:
    """Names listed in modules.builtin."""
    return {module_name(line) for line in text.split()}


def modinfo(ko: Path) -> dict[str, str]:
    """The key=value pairs of a module's .modinfo section (last value wins)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with ko.open("rb") as f:
            section = ELFFile(f).get_section_by_name(".modinfo")
            data = section.data() if section is not None else b""
    except (ELFError, OSError) as e:
        raise KdkError(f"{ko}: not a kernel module ({e})") from None
    info = {}
    for entry in data.split(b"\0"):
        key, sep, value = entry.decode(errors="replace").partition("=")
        if sep:
            info[key] = value
    return info


def check_vermagic(ko: Path, info: dict[str, str], release: str) -> None:
    """Refuse a module whose vermagic names another kernel than `release`."""
    vermagic = info.get("vermagic", "")
    built_for = vermagic.split(" ", 1)[0]
    if built_for != release:
        raise VermagicMismatch(
            f"{ko.name} was built for kernel {built_for or '(no vermagic)'}, "
            f"the guest runs {release}: rebuild it with `kdk build`"
        )


XEN_ELFNOTE_PHYS32_ENTRY = 18  # the PVH entry point QEMU boots an ELF kernel at


def has_pvh_entry(vmlinux: Path) -> bool:
    """True when an ELF kernel can be booted directly (PVH), skipping the
    bzImage's self-decompression, which takes seconds under TCG."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.segments import NoteSegment

    try:
        with vmlinux.open("rb") as f:
            for seg in ELFFile(f).iter_segments():
                if isinstance(seg, NoteSegment):
                    for note in seg.iter_notes():
                        n_type: object = note["n_type"]  # an int for Xen's notes
                        if note["n_name"] == "Xen" and n_type == XEN_ELFNOTE_PHYS32_ENTRY:
                            return True
    except (ELFError, OSError):
        return False
    return False


def _decompressors() -> list[tuple[bytes, Callable[[bytes], bytes]]]:
    import gzip
    import lzma

    def unzstd(data: bytes) -> bytes:
        if not shutil.which("zstd"):
            return b""
        out = subprocess.run(["zstd", "-dcq"], input=data, capture_output=True)
        return out.stdout

    def unxz(data: bytes) -> bytes:
        return lzma.LZMADecompressor().decompress(data)

    def ungzip(data: bytes) -> bytes:
        return gzip.GzipFile(fileobj=io.BytesIO(data)).read()

    return [(b"\xfd7zXZ\x00", unxz), (b"\x28\xb5\x2f\xfd", unzstd), (b"\x1f\x8b\x08", ungzip)]


def extract_vmlinux(image: Path, cache_dir: Path) -> Path | None:
    """The ELF kernel inside a bzImage, cached; None when there is none that
    boots directly (unknown compression or no PVH entry point)."""
    st = image.stat()
    target = cache_dir / f"vmlinux-{image.name}-{st.st_size}-{st.st_mtime_ns}"
    if target.exists():
        return target
    data = image.read_bytes()
    for magic, decompress in _decompressors():
        at = data.find(magic)
        while at >= 0:
            try:
                elf = decompress(data[at:])
            except (OSError, EOFError, ValueError):
                elf = b""
            if elf.startswith(b"\x7fELF"):
                cache_dir.mkdir(parents=True, exist_ok=True)
                for old in cache_dir.glob(f"vmlinux-{image.name}-*"):
                    old.unlink()
                tmp = target.with_suffix(".tmp")
                tmp.write_bytes(elf)
                if not has_pvh_entry(tmp):
                    tmp.unlink()
                    return None
                tmp.replace(target)
                return target
            at = data.find(magic, at + 1)
    return None
