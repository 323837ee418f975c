"""`kdk kernel build`: config assembly, naming, the kernels it leaves and
how kdk boots them; without building a kernel (test_kbuild_vm.py does)."""

from __future__ import annotations

import gzip
import os
import time
from pathlib import Path

import pytest

from kdk.errors import BuildFailed, KdkError
from kdk.kbuild import build, config
from kdk.kernel import Kernel, built_kernels, select_kernel
from kdk.vm import qemu
from kdk.vm.vmlinux import extract_vmlinux

from .conftest import kdk_cli

MAKEFILE = "VERSION = 6\nPATCHLEVEL = 1\nSUBLEVEL = 192\nEXTRAVERSION =\nNAME = Curry Ramen\n"


def test_fragments_parse_set_unset_and_strings() -> None:
    text = 'CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C="-kdk"\n# a comment\nCONFIG_D=m\n'
    assert config.options(text) == {
        "CONFIG_A": "y",
        "CONFIG_B": "n",
        "CONFIG_C": '"-kdk"',
        "CONFIG_D": "m",
    }


def test_options_a_fragment_set_and_the_config_lost_are_named() -> None:
    wanted = {"CONFIG_KASAN": "y", "CONFIG_X": "n", "CONFIG_DUMMY": "m", "CONFIG_NR_CPUS": "8"}
    final = {"CONFIG_KASAN": "y", "CONFIG_DUMMY": "y", "CONFIG_NR_CPUS": "8"}
    assert config.missing(wanted, final) == ["CONFIG_DUMMY=m (is: y)"]
    assert config.missing({"CONFIG_KCSAN": "y"}, final) == ["CONFIG_KCSAN=y (is: n)"]


def test_every_kdk_fragment_is_options_only() -> None:
    for frag in config.FRAGMENTS.glob("*.config"):
        lines = [ln for ln in frag.read_text().splitlines() if ln and not ln.startswith("#")]
        assert len(config.options(frag.read_text())) == len(lines), frag
    debug = config.options((config.FRAGMENTS / "debug.config").read_text())
    for opt in (
        "KASAN",
        "PROVE_LOCKING",
        "DEBUG_ATOMIC_SLEEP",
        "DEBUG_KMEMLEAK",
        "UBSAN",
        "FAILSLAB",
        "FAIL_PAGE_ALLOC",
        "FAULT_INJECTION_DEBUG_FS",
        "KUNIT_DEBUGFS",
    ):
        assert debug[f"CONFIG_{opt}"] == "y"
    assert "CONFIG_KASAN" not in config.options((config.FRAGMENTS / "kcsan.config").read_text())


def test_features_are_read_from_a_config() -> None:
    text = "CONFIG_KASAN=y\nCONFIG_PROVE_LOCKING=y\n# CONFIG_KCSAN is not set\nCONFIG_KUNIT=m\n"
    assert config.features(text) == ["kasan", "lockdep"]
    debian = "CONFIG_DEBUG_INFO_BTF=y\nCONFIG_KFENCE=y\n"
    assert config.features(debian) == ["kfence", "btf"]


def test_the_release_says_it_is_kdks_and_what_it_is(tmp_path: Path) -> None:
    assert build.kernel_version(MAKEFILE) == "6.1.192"
    assert build.kernel_version(MAKEFILE.replace("EXTRAVERSION =", "EXTRAVERSION = -rc3")) == (
        "6.1.192-rc3"
    )
    assert config.localversion("debug", "") == "-kdk-debug"
    assert config.localversion("", "") == "-kdk"
    tree = tmp_path / "my linux_tree"
    tree.mkdir()
    assert config.localversion("kcsan", config.label_of(tree)) == "-kdk-my.linux.tree-kcsan"
    with pytest.raises(KdkError, match="Makefile"):
        build.kernel_version("all:\n")
    with pytest.raises(KdkError, match="separate builds"):
        config.flavour_of(True, True)


def test_the_fragments_come_in_order_kdks_first() -> None:
    mine = Path("/x/mine.config")
    frags = config.kdk_fragments("debug", [mine])
    assert [f.name for f in frags] == ["kdk.config", "debug.config", "mine.config"]
    assert [f.name for f in config.kdk_fragments("", [])] == ["kdk.config"]


def test_the_progress_line_counts_compiled_files() -> None:
    make_output = [
        "  CC      kernel/fork.o",
        "  CC [M]  lib/crc7.o",
        "  CHK     include/generated/compile.h",
        "  CCC     not.o",
        "  LD      vmlinux.o",
        "  HOSTCC  scripts/kconfig/conf.o",
    ]
    assert [bool(build.COMPILED.match(line)) for line in make_output] == [
        True,
        True,
        False,
        False,
        False,
        False,
    ]
    assert build.progress_line(150, 3000, True, 125.4) == (
        "compiled 150 of about 3000 files (5%), 2:05"
    )
    assert (
        build.progress_line(3100, 3000, False, 3600) == "compiled 3100 of 3000 files (99%), 60:00"
    )


def test_the_inputs_are_the_same_from_another_checkout(tmp_path: Path) -> None:
    """kdk's fragments stand in every clone of kdk: a build from another
    checkout (CI's fresh clone) reuses the kernel, a changed option does not."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Makefile").write_text(MAKEFILE)
    plans = []
    for checkout, option in (("a", "y"), ("b", "y"), ("c", "n")):
        frag = tmp_path / checkout / "kdk.config"
        frag.parent.mkdir()
        frag.write_text(f"CONFIG_KASAN={option}\n")
        plans.append(build.Plan(tmp_path / "src", "debug", (frag,), "6.1.192-kdk-debug", 2))
    a, b, c = (p.inputs() for p in plans)
    assert a == b != c


def test_the_tree_stamp_moves_when_a_file_changes(tmp_path: Path) -> None:
    (tmp_path / "a.c").write_text("int a;\n")
    (tmp_path / ".git").mkdir()
    first = build.tree_stamp(tmp_path)
    (tmp_path / ".git" / "index").write_text("x")  # git's own files do not count
    assert build.tree_stamp(tmp_path) == first
    st = (tmp_path / "a.c").stat()
    os.utime(tmp_path / "a.c", ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    second = build.tree_stamp(tmp_path)
    assert second != first
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.c").write_text("")
    assert build.tree_stamp(tmp_path) != second


def fake_build(cache: Path, release: str, config_text: str = "") -> Kernel:
    """A folder as `kdk kernel build` leaves it (empty files)."""
    folder = cache / release
    mods = folder / "modules" / "lib" / "modules" / release
    (folder / "build").mkdir(parents=True)
    mods.mkdir(parents=True)
    (mods / "build").symlink_to(folder / "build")
    (folder / f"vmlinuz-{release}").write_bytes(b"")
    (folder / f"config-{release}").write_text(config_text)
    return Kernel(release, folder / f"vmlinuz-{release}", mods)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "kdk" / "kernels"


def test_built_kernels_are_found_newest_first_and_debug_names_one(cache: Path) -> None:
    old = fake_build(cache, "6.1.192-kdk-debug")
    os.utime(old.image, (time.time() - 100, time.time() - 100))
    new = fake_build(cache, "6.1.192-kdk-mytree-debug")
    plain = fake_build(cache, "6.1.192-kdk")
    (cache / "6.1.193-kdk").mkdir()  # an unfinished build: no image yet
    assert built_kernels() == [new, plain, old] or built_kernels() == [plain, new, old]
    assert all(k.built for k in built_kernels())
    assert select_kernel("debug") == new
    assert select_kernel("6.1.192-kdk") == plain
    assert select_kernel("6.1.192-kdk-debug") == old
    with pytest.raises(KdkError, match="kdk kernel build --kcsan"):
        select_kernel("kcsan")


def test_the_hosts_kernel_is_not_a_built_one() -> None:
    assert not Kernel(
        "6.1.0-57-amd64", Path("/boot/vmlinuz-6.1.0-57-amd64"), Path("/lib/modules/6.1.0-57-amd64")
    ).built


def test_a_built_kernel_gets_its_modules_folder_and_kasan_multi_shot(cache: Path) -> None:
    k = fake_build(cache, "6.1.192-kdk-debug", "CONFIG_KASAN=y\n")
    cfg = qemu.QemuConfig(
        k,
        Path("/c/vmlinux"),
        Path("/c/initrd"),
        Path("/p"),
        Path("/p/.kdk/vms/default"),
        "tcg",
        2222,
    )
    line = qemu.kernel_cmdline(cfg).split()
    assert f"kdk.moddir={k.modules_dir}" in line and "kasan_multi_shot" in line
    assert qemu.built_trees(k) == (k.image.parent,)  # no source link in this fake
    plain = fake_build(cache, "6.1.192-kdk", "# CONFIG_KASAN is not set\n")
    assert "kasan_multi_shot" not in qemu.built_cmdline(plain)
    assert not [p for p in line + qemu.built_cmdline(plain) if p.startswith("slub_debug")]
    host = Kernel("6.1.0-57-amd64", Path("/boot/x"), Path("/lib/modules/6.1.0-57-amd64"))
    assert qemu.built_cmdline(host) == [] and qemu.built_trees(host) == ()


def test_a_built_kernel_with_failslab_marks_the_caches_a_sweep_counts(cache: Path) -> None:
    k = fake_build(cache, "6.1.192-kdk-debug", "CONFIG_FAILSLAB=y\nCONFIG_SLUB_DEBUG=y\n")
    images, state = (Path("/c/vmlinux"), Path("/c/initrd")), Path("/p/.kdk/vms/default")
    unmarked = f"-,{qemu.UNMARKED}"
    for debug, flags in ((False, "A"), (True, "FZPUA")):  # one slub_debug= (the last is kept)
        cfg = qemu.QemuConfig(k, *images, Path("/p"), state, "tcg", 2222, debug=debug)
        slub = [p for p in qemu.kernel_cmdline(cfg).split() if p.startswith("slub_debug=")]
        assert slub == [f"slub_debug={flags};{unmarked}"]


def test_a_kernel_with_kasan_or_lockdep_gets_twice_the_boot_time(cache: Path) -> None:
    debug = fake_build(cache, "6.1.192-kdk-debug", "CONFIG_PROVE_LOCKING=y\n")
    plain = fake_build(cache, "6.1.192-kdk", "CONFIG_KALLSYMS=y\n")
    assert qemu.boot_budget(plain) == (qemu.STALLED, qemu.BOOT_TIMEOUT)
    assert qemu.boot_budget(debug) == (2 * qemu.STALLED, 2 * qemu.BOOT_TIMEOUT)


def test_a_false_gzip_magic_in_an_image_is_no_traceback(tmp_path: Path) -> None:
    # A bzImage holds b"\x1f\x8b\x08" before its real payload: a built
    # kernel's did, and zlib raised on it.
    image = tmp_path / "vmlinuz-x"
    image.write_bytes(b"\0" * 64 + b"\x1f\x8b\x08\0\0\0\0\0\0\3garbage" + gzip.compress(b"no elf"))
    assert extract_vmlinux(image, tmp_path / "cache") is None


def test_remove_names_what_there_is(cache: Path) -> None:
    fake_build(cache, "6.1.192-kdk-debug")
    with pytest.raises(
        KdkError, match=r"no kernel 'nope' built by kdk \(built: 6\.1\.192-kdk-debug"
    ):
        build.remove("nope")
    assert build.remove("6.1.192-kdk-debug") == cache / "6.1.192-kdk-debug"
    assert not (cache / "6.1.192-kdk-debug").exists()


def test_cli_lists_installed_and_built_kernels_with_their_features(cache: Path) -> None:
    fake_build(cache, "6.1.192-kdk-debug", "CONFIG_KASAN=y\nCONFIG_KUNIT=y\n")
    res = kdk_cli("kernel", "list")
    assert res.returncode == 0, res.stderr
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in res.stdout.splitlines()[1:]}
    assert rows["6.1.192-kdk-debug"] == ["built", "kasan, kunit"]
    assert any(kind == "installed" for kind, _ in rows.values())
    res = kdk_cli("kernel", "build", "--debug", "--kcsan")
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        "kdk: --debug and --kcsan are separate builds (KCSAN excludes KASAN)"
    ]
    res = kdk_cli("kernel", "build", "--config", str(cache / "none.config"))
    assert res.returncode == 1 and "none.config: no such config fragment" in res.stderr


@pytest.mark.kbuild
def test_the_kernels_own_tools_keep_every_option_and_name_the_ones_they_drop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """merge_config.sh + olddefconfig on Debian's source (unpacked once in
    the user's cache, as `kdk kernel build` does), configured in a scratch
    cache: kdk's debug config holds; an option the architecture forbids is
    named in one line."""
    source = build.debian_source(print)
    monkeypatch.setattr(build, "debian_source", lambda say: source)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    cache = tmp_path / "kdk" / "kernels"
    p = build.plan(None, "debug", [], 1, print)
    assert p.release.endswith("-kdk-debug") and p.folder == cache / p.release
    build.configure(p)
    final = config.options((p.build / ".config").read_text())
    assert final["CONFIG_LOCALVERSION"] == '"-kdk-debug"' and final["CONFIG_KASAN"] == "y"
    assert final["CONFIG_9P_FS"] == "y" and final["CONFIG_DEBUG_INFO_BTF"] == "y"
    mtime = (p.build / ".config").stat().st_mtime_ns
    time.sleep(0.01)
    build.configure(p)  # the same config again: make must see no change
    assert (p.build / ".config").stat().st_mtime_ns == mtime
    bad = tmp_path / "bad.config"
    bad.write_text("CONFIG_FAULT_INJECTION_STACKTRACE_FILTER=y\n")  # depends on !X86_64
    with pytest.raises(BuildFailed) as e:
        build.configure(build.plan(None, "debug", [bad], 1, print))
    assert str(e.value) == (
        "the config lost options its fragments set: "
        "CONFIG_FAULT_INJECTION_STACKTRACE_FILTER=y (is: n)"
    )
