"""The bare ELF kernel inside a bzImage, which QEMU can boot directly (PVH)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

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
            except (OSError, EOFError, ValueError, zlib.error):  # a false magic
                elf = b""
            if elf.startswith(b"\x7fELF"):
                cache_dir.mkdir(parents=True, exist_ok=True)
                for old in cache_dir.glob(f"vmlinux-{image.name}-*"):
                    if old.suffix != ".tmp":  # another process's, being written
                        old.unlink(missing_ok=True)
                tmp = target.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_bytes(elf)
                if not has_pvh_entry(tmp):
                    tmp.unlink()
                    return None
                tmp.replace(target)
                return target
            at = data.find(magic, at + 1)
    return None
