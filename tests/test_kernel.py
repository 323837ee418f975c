"""Kernel discovery, modules.dep resolution and vermagic, on stored real files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdk.errors import KdkError, MissingDependency, VermagicMismatch
from kdk.kernel import (
    Kernel,
    _version_key,
    builtin_modules,
    default_kernel,
    host_kernels,
    load_order,
    load_rounds,
    matches,
    module_name,
    parse_modules_dep,
)
from kdk.modules.info import check_vermagic

from .conftest import DATA

DEPS = parse_modules_dep((DATA / "modules.dep-6.1").read_text())
BUILTIN = builtin_modules((DATA / "modules.builtin-6.1").read_text())


def test_module_names() -> None:
    assert module_name("kernel/net/9p/9pnet_virtio.ko") == "9pnet_virtio"
    assert module_name("kernel/drivers/virtio/virtio-ring.ko.xz") == "virtio_ring"
    assert module_name("hello.ko.zst") == "hello"


def test_dependencies_come_first_each_once() -> None:
    order = [module_name(p) for p in load_order(DEPS, ["virtio_pci", "9pnet_virtio", "9p"], set())]
    assert order.index("virtio_ring") < order.index("virtio") < order.index("virtio_pci")
    assert order.index("9pnet") < order.index("9pnet_virtio")
    assert order.index("netfs") < order.index("9p") and order.index("fscache") < order.index("9p")
    assert len(order) == len(set(order))
    assert order[-1] == "9p"


def test_the_recipe_resolves_on_debian_6_1() -> None:
    wanted = ["virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_net"]
    order = [module_name(p) for p in load_order(DEPS, wanted, BUILTIN)]
    assert set(wanted) <= set(order)
    assert order.index("failover") < order.index("net_failover") < order.index("virtio_net")


def test_rounds_put_every_dependency_in_an_earlier_round() -> None:
    wanted = ["virtio_pci", "9pnet_virtio", "9p", "overlay", "virtio_net"]
    rounds = [[module_name(p) for p in r] for r in load_rounds(DEPS, wanted, BUILTIN)]
    first = ["virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring", "9pnet", "netfs"]
    assert rounds == [
        [*first, "overlay", "failover"],
        ["virtio", "fscache", "net_failover"],
        ["virtio_pci", "9p"],
        ["9pnet_virtio", "virtio_net"],  # after the transport that makes their devices
    ]
    every = [m for r in rounds for m in r]
    assert sorted(every) == sorted(module_name(p) for p in load_order(DEPS, wanted, BUILTIN))


def test_builtin_modules_are_skipped() -> None:
    assert "unix" in BUILTIN
    assert load_order(DEPS, ["veth"], {"veth"}) == []


def test_unknown_module_is_named() -> None:
    with pytest.raises(MissingDependency, match="nosuchmod"):
        load_order(DEPS, ["nosuchmod"], BUILTIN)


def test_release_sorting() -> None:
    rels = ["6.1.0-9-amd64", "6.1.0-10-amd64", "5.10.0-28-amd64", "6.12.1"]
    assert sorted(rels, key=_version_key, reverse=True) == [
        "6.12.1",
        "6.1.0-10-amd64",
        "6.1.0-9-amd64",
        "5.10.0-28-amd64",
    ]


def test_host_kernels_need_headers(tmp_path: Path) -> None:
    boot, mods = tmp_path / "boot", tmp_path / "modules"
    for rel in ("6.1.0-1-amd64", "6.1.0-2-amd64"):
        (boot).mkdir(exist_ok=True)
        (boot / f"vmlinuz-{rel}").write_bytes(b"")
    (mods / "6.1.0-1-amd64" / "build").mkdir(parents=True)
    (mods / "6.1.0-2-amd64").mkdir(parents=True)  # no headers: not usable
    assert [k.release for k in host_kernels(boot, mods)] == ["6.1.0-1-amd64"]


def test_vermagic_check() -> None:
    info = {"vermagic": "6.1.0-56-amd64 SMP preempt mod_unload modversions "}
    check_vermagic(Path("hello.ko"), info, "6.1.0-56-amd64")
    with pytest.raises(VermagicMismatch, match=r"built for kernel 6\.1\.0-56-amd64.*runs 6\.12\.9"):
        check_vermagic(Path("hello.ko"), info, "6.12.9")
    with pytest.raises(KdkError, match="no vermagic"):
        check_vermagic(Path("x.ko"), {}, "6.1.0-56-amd64")


def test_a_prefix_names_a_release_at_a_version_boundary() -> None:
    assert matches("6.1", "6.1.0-56-amd64") and matches("6.1.0-", "6.1.0-56-amd64")
    assert matches("6.12", "6.12.117+deb12-amd64")
    assert matches("6.12.117+deb12-amd64", "6.12.117+deb12-amd64")
    assert not matches("6.1", "6.12.117+deb12-amd64")
    assert not matches("6.12.11", "6.12.117+deb12-amd64")


def test_the_default_is_what_vmlinuz_names(tmp_path: Path) -> None:
    kernels = [
        Kernel(rel, tmp_path / f"vmlinuz-{rel}", tmp_path / rel)
        for rel in ("6.12.117+deb12-amd64", "6.1.0-56-amd64")
    ]
    for k in kernels:
        k.image.write_bytes(b"")
    link = tmp_path / "vmlinuz"
    assert default_kernel(kernels, (link,)) == kernels[0]  # no link: the newest
    link.symlink_to(kernels[1].image.name)
    assert default_kernel(kernels, (link,)) == kernels[1]
