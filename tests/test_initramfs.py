"""The initramfs writer: newc records a kernel can unpack, and the recipe."""

from __future__ import annotations

import stat

from kdk.vm.initramfs import RECIPE, cpio_archive, recipe_modules


def read_newc(data: bytes) -> list[tuple[str, int, bytes, tuple[int, int]]]:
    """An independent newc reader: (name, mode, data, rdev) per record."""
    out: list[tuple[str, int, bytes, tuple[int, int]]] = []
    pos = 0
    while True:
        assert data[pos : pos + 6] == b"070701"
        f = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = f[1], f[6], f[9], f[10], f[11]
        name_at = pos + 110
        name = data[name_at : name_at + namesize - 1].decode()
        body_at = name_at + namesize + (-(110 + namesize) % 4)
        body = data[body_at : body_at + size]
        pos = body_at + size + (-size % 4)
        if name == "TRAILER!!!":
            assert pos == len(data)
            return out
        out.append((name, mode, body, (rmaj, rmin)))


def test_records_round_trip_with_alignment() -> None:
    entries = [
        ("bin", stat.S_IFDIR | 0o755, b"", (0, 0)),
        ("dev/console", stat.S_IFCHR | 0o600, b"", (5, 1)),
        ("init", stat.S_IFREG | 0o755, b"#!/bin/sh\n", (0, 0)),
        ("x", stat.S_IFREG | 0o644, b"abc", (0, 0)),  # odd sizes need padding
    ]
    data = cpio_archive(entries)
    assert len(data) % 4 == 0
    assert read_newc(data) == entries


def test_recipe_reads_names_and_ignores_comments() -> None:
    assert recipe_modules("a # why\n\n# only a comment\nb c\t# more\n") == ["a", "b", "c"]
    shipped = recipe_modules(RECIPE.read_text())
    assert {"virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_net"} == set(shipped)
