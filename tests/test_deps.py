"""Which modules load first, from the symbols of real .ko files built here;
kernel errnos and missing symbols named, on stored real insmod messages."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kdk.errors import KdkError
from kdk.kernel import Kernel
from kdk.klog import kmsg
from kdk.modules import info
from kdk.modules.build import build
from kdk.modules.deps import (
    Siblings,
    Symvers,
    UnresolvedSymbol,
    kernel_symbols,
    parse_symvers,
    plan,
    plan_in_project,
)
from kdk.modules.errnos import KERNEL_ERRNOS, insmod_reason, name_errno
from kdk.project import ModuleSource

from .conftest import DATA
from .usermods import pair


def test_module_symvers_says_image_or_module() -> None:
    text = (
        "0x4c9d28b0\tphys_base\tvmlinux\tEXPORT_SYMBOL\t\n"
        "0x12345678\tusb_register_driver\tdrivers/usb/core/usbcore\tEXPORT_SYMBOL_GPL\t\n"
        "0x9abcdef0\tnf_conntrack_in\tnet/netfilter/nf_conntrack\tEXPORT_SYMBOL_GPL\t\n"
    )
    assert parse_symvers(text) == {
        "phys_base": "vmlinux",
        "usb_register_driver": "usbcore",
        "nf_conntrack_in": "nf_conntrack",
    }


def test_symvers_looked_up_says_what_it_says_parsed() -> None:
    """A load looks up only the symbols it needs (deps.Symvers); a name
    found in another field of a line (a module's path, the export's kind)
    is not a symbol."""
    text = (
        "0x4c9d28b0\tphys_base\tvmlinux\tEXPORT_SYMBOL\t\n"
        "0x12345678\tusb_register_driver\tdrivers/usb/core/usbcore\tEXPORT_SYMBOL_GPL\t\n"
        "0x9abcdef0\tusbcore\tdrivers/usb/core/usbcore\tEXPORT_SYMBOL\tUSB\n"
    )
    symvers = Symvers(text)
    assert dict(symvers) == parse_symvers(text)
    assert symvers["usbcore"] == "usbcore" and symvers["phys_base"] == "vmlinux"
    for other_field in ("vmlinux", "EXPORT_SYMBOL", "USB", "0x4c9d28b0", "phys"):
        assert other_field not in symvers
    parsed = Symvers(text)
    assert len(parsed) == 3 and parsed["usbcore"] == "usbcore"  # from the parsed dict now
    assert "vmlinux" not in parsed


@pytest.fixture(scope="module")
def pair_kos(tmp_path_factory: pytest.TempPathFactory, host_kernel: Kernel) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("deps")
    built = build(ModuleSource("pair", pair(root)), host_kernel, root / "stamps")
    return {ko.name.removesuffix(".ko"): ko for ko in built.modules}


@pytest.mark.kbuild
def test_the_provider_loads_first_and_its_user_unloads_first(
    pair_kos: dict[str, Path], host_kernel: Kernel
) -> None:
    prov, user = pair_kos["kdkprov"], pair_kos["kdkuser"]
    folder = Siblings(list(pair_kos.values()))
    assert "kdkprov_add" in folder.symbols[prov].exports
    assert "kdkprov_add" in folder.symbols[user].needs
    kernel = kernel_symbols(host_kernel.build_dir)
    assert plan(user, folder, kernel).providers == [prov]
    assert plan(prov, folder, kernel).providers == []
    assert folder.dependents(prov) == [user] and folder.dependents(user) == []
    assert plan(user, folder, kernel).kernel_modules == []  # only the image's symbols


@pytest.mark.kbuild
def test_a_ko_s_facts_are_read_once_while_the_file_stays_the_same(
    pair_kos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ko = tmp_path / "kdkprov.ko"
    shutil.copy(pair_kos["kdkprov"], ko)
    first = info.ko_facts(ko)
    assert "kdkprov_add" in first.exports and dict(first.modinfo)["name"] == "kdkprov"

    def parsed(ko: Path) -> info.KoFacts:
        raise AssertionError(f"{ko} parsed again")

    monkeypatch.setattr(info, "_read_facts", parsed)
    assert info.ko_facts(ko) == first  # from the user's cache
    st = ko.stat()
    os.utime(ko, ns=(st.st_atime_ns, st.st_mtime_ns + 1))  # rebuilt, as far as it can tell
    with pytest.raises(AssertionError, match="parsed again"):
        info.ko_facts(ko)


@pytest.mark.kbuild
def test_a_symbol_nothing_provides_is_named_with_its_module(
    pair_kos: dict[str, Path], host_kernel: Kernel
) -> None:
    user = pair_kos["kdkuser"]
    with pytest.raises(UnresolvedSymbol, match=r"^kdkuser needs kdkprov_add, which neither"):
        plan(user, Siblings([user]), kernel_symbols(host_kernel.build_dir))


@pytest.mark.kbuild
def test_symbols_of_the_kernels_modules_are_modprobed(
    pair_kos: dict[str, Path], host_kernel: Kernel
) -> None:
    user = pair_kos["kdkuser"]
    kernel = {**kernel_symbols(host_kernel.build_dir), "kdkprov_add": "somedriver"}
    p = plan(user, Siblings([user]), kernel)
    assert (p.providers, p.kernel_modules) == ([], ["somedriver"])


def test_kernel_internal_errnos_are_named_and_explained() -> None:
    stored = (DATA / "insmod-eprobe-defer.txt").read_text()  # insmod's own stderr
    reason = insmod_reason(stored, [])
    assert reason.startswith("init returned -EPROBE_DEFER (517): ") and "probe is retried" in reason
    assert set(KERNEL_ERRNOS) == set(range(512, 532)) - {520}  # 520 is unused
    assert name_errno("Unknown error 512").startswith("ERESTARTSYS (512): ")
    assert name_errno("Unknown error 4242") == "Unknown error 4242"


def test_unknown_symbol_in_module_names_the_symbols_from_the_log() -> None:
    stored = (DATA / "insmod-unknown-symbol.txt").read_text()
    log = [r.text for r in kmsg.parse((DATA / "kmsg-unknown-symbol.txt").read_text())]
    assert insmod_reason(stored, log) == (
        "Unknown symbol in module: kdkprov_add (exported by no loaded module)"
    )
    # no symbol named: ENOENT came from init (e.g. a kprobe on a missing function)
    assert insmod_reason(stored, []) == "init returned -ENOENT (2)"


@pytest.mark.kbuild
def test_a_provider_in_another_folder_of_the_project_is_found(
    pair_kos: dict[str, Path], host_kernel: Kernel
) -> None:
    prov, user = pair_kos["kdkprov"], pair_kos["kdkuser"]
    kernel = kernel_symbols(host_kernel.build_dir)
    assert plan_in_project(user, [user], kernel, lambda: [prov]).providers == [prov]
    with pytest.raises(UnresolvedSymbol, match="nor the modules built in the project export"):
        plan_in_project(user, [user], kernel, lambda: [])
    # a folder being built again meanwhile: its module listed, then gone
    gone = prov.with_name("rebuilding.ko")
    assert plan_in_project(user, [user], kernel, lambda: [gone, prov]).providers == [prov]
    with pytest.raises(KdkError, match=r"rebuilding\.ko: not a kernel module"):
        Siblings([gone])
