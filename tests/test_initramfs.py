"""The initramfs writer: newc records a kernel can unpack, and the recipe."""

from __future__ import annotations

import gzip
import lzma
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from kdk.kernel import Kernel, builtin_modules, load_order, module_name, parse_modules_dep
from kdk.vm.initramfs import (
    RECIPE,
    _module_bytes,
    _resolved_modules,
    cpio_archive,
    initramfs,
    recipe_modules,
    stale,
)

from .conftest import DATA


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


def test_the_recipe_resolves_on_debian_6_12() -> None:
    """6.12 builds the virtio core and PCI transport in, ships modules
    xz-compressed, and fscache lives inside netfs."""
    deps = parse_modules_dep((DATA / "modules.dep-6.12").read_text())
    builtin = builtin_modules((DATA / "modules.builtin-6.12").read_text())
    paths = load_order(deps, recipe_modules(RECIPE.read_text()), builtin)
    order = [module_name(p) for p in paths]
    assert "virtio_pci" not in order and "virtio_pci" in builtin
    assert order.index("netfs") < order.index("9p") and order.index("9pnet") < order.index("9p")
    assert order.index("9pnet") < order.index("9pnet_virtio")
    assert order.index("failover") < order.index("net_failover") < order.index("virtio_net")
    assert all(p.endswith(".ko.xz") for p in paths)


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [(".ko", bytes), (".ko.xz", lzma.compress), (".ko.gz", gzip.compress)],
)
def test_compressed_modules_go_in_as_elf(
    tmp_path: Path, suffix: str, compress: Callable[[bytes], bytes]
) -> None:
    elf = b"\x7fELF" + bytes(range(256)) * 4
    path = tmp_path / f"m{suffix}"
    path.write_bytes(compress(elf))
    assert _module_bytes(path) == elf


def test_device_drivers_follow_the_recipe_with_their_dependencies(host_kernel: Kernel) -> None:
    base = {module_name(p.name) for r in _resolved_modules(host_kernel) for p in r}
    rounds = _resolved_modules(host_kernel, ["kvaser_pci", "can_raw"])
    round_of = {module_name(p.name): i for i, r in enumerate(rounds) for p in r}
    assert sorted(round_of.keys() - base) == ["can", "can_dev", "can_raw", "kvaser_pci", "sja1000"]
    for used, user in [("can_dev", "sja1000"), ("sja1000", "kvaser_pci"), ("can", "can_raw")]:
        assert round_of[used] < round_of[user]


def test_an_image_replaces_only_its_own_variant_and_unnamed_ones(tmp_path: Path) -> None:
    names = [
        "initramfs-6.1.0-57-amd64-base-1a.cpio",
        "initramfs-6.1.0-57-amd64-0fe2.cpio",
        "initramfs-6.1.0-57-amd64-kvaser_pci+can_raw-2b.cpio",
        "initramfs-6.12.1+deb12-amd64-base-3c.cpio",
    ]
    for name in names:
        (tmp_path / name).touch()

    def replaced(variant: str) -> list[str]:
        return sorted(p.name for p in stale(tmp_path, "6.1.0-57-amd64", variant))

    assert replaced("base") == sorted(names[:2])
    assert replaced("kvaser_pci+can_raw") == sorted(names[1:3])


def test_the_image_holds_kdks_programs_and_is_made_without_a_compiler_too(
    host_kernel: Kernel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kmsg_end (a load script's way to the kernel log's end) and kdk's
    insmod (a load's, which loads once) are built into the image; where
    they cannot be built, the image is made all the same (the scripts then
    use dd, and busybox's insmod)."""
    names = {e[0]: e for e in read_newc(initramfs(host_kernel, tmp_path / "a").read_bytes())}
    for program in ("bin/kmsg_end", "bin/kdk-insmod"):
        assert names[program][1] == stat.S_IFREG | 0o755
        assert names[program][2].startswith(b"\x7fELF")
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs"))  # no gcc
    without = {e[0] for e in read_newc(initramfs(host_kernel, tmp_path / "b").read_bytes())}
    assert not {"bin/kmsg_end", "bin/kdk-insmod"} & without
    assert {"init", "bin/busybox"} <= without
    assert any(n.startswith("modules/") for n in without)
