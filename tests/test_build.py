"""Builds on the host: Kbuild or the folder's own make, output filtering, staleness, errors."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

from kdk.errors import BuildFailed, UnknownModule
from kdk.kernel import Kernel, host_kernels
from kdk.locks import file_lock
from kdk.make import host_make
from kdk.modules.build import (
    build,
    build_lock,
    built_modules,
    compiler_output,
    drives_kbuild,
    kept_modules,
    main_module,
    make_argv,
    outside_sources,
    read_modules_order,
    source_digest,
)
from kdk.modules.info import modinfo
from kdk.project import ModuleSource

from .conftest import DATA, PROJECT
from .usermods import classic, pair


def test_compiler_output_keeps_errors_and_drops_chatter() -> None:
    out = compiler_output((DATA / "kbuild-error.txt").read_text())
    assert "/tmp/broken/broken.c:5:16: error: " in out and "undefined_thing" in out
    assert "Entering directory" not in out and "CC [M]" not in out


def test_modules_order_in_both_formats(tmp_path: Path) -> None:
    (tmp_path / "modules.order").write_text(f"{tmp_path}/a.ko\nb.o\n")
    assert read_modules_order(tmp_path) == [tmp_path / "a.ko", tmp_path / "b.ko"]
    assert read_modules_order(tmp_path / "none") == []


def test_digest_follows_sources_not_outputs(tmp_path: Path, host_kernel: Kernel) -> None:
    (tmp_path / "m.c").write_text("int x;\n")
    (tmp_path / "Kbuild").write_text("obj-m := m.o\n")
    first = source_digest(tmp_path, host_kernel)
    (tmp_path / "m.ko").write_bytes(b"output")
    (tmp_path / "m.mod.c").write_text("generated")
    assert source_digest(tmp_path, host_kernel) == first
    os.utime(tmp_path / "m.c", ns=(1, 1))
    assert source_digest(tmp_path, host_kernel) != first
    other = Kernel("9.9.9", host_kernel.image, host_kernel.modules_dir)
    assert source_digest(tmp_path, other) != source_digest(tmp_path, host_kernel)


def test_digest_follows_a_kernel_built_again_with_the_same_release(tmp_path: Path) -> None:
    """kdk kernel build keeps a kernel's release when it builds it again:
    its new Module.symvers (written by every kernel build) is what tells."""
    (tmp_path / "m" / "m.c").parent.mkdir()
    (tmp_path / "m" / "m.c").write_text("int x;\n")
    tree = tmp_path / "lib" / "modules" / "6.1.192-kdk-debug"
    (tree / "build").mkdir(parents=True)
    (tree / "build" / "Module.symvers").write_text("0x1\tsym\tvmlinux\tEXPORT_SYMBOL\t\n")
    kernel = Kernel("6.1.192-kdk-debug", tmp_path / "vmlinuz", tree)
    first = source_digest(tmp_path / "m", kernel)
    assert source_digest(tmp_path / "m", kernel) == first
    (tree / "build" / "Module.symvers").write_text("0x2\tsym\tvmlinux\tEXPORT_SYMBOL\t\n")
    assert source_digest(tmp_path / "m", kernel) != first


def copy_hello(dest: Path, name: str = "hello") -> ModuleSource:
    folder = dest / name
    folder.mkdir()
    shutil.copy(PROJECT / "kmods" / "hello" / "hello.c", folder / f"{name}.c")
    (folder / "Kbuild").write_text(f"obj-m := {name}.o\n")
    return ModuleSource(name, folder)


@pytest.mark.kbuild
def test_a_kernel_built_again_relinks_the_module(tmp_path: Path, host_kernel: Kernel) -> None:
    """Kbuild relinks an external module only when its own objects change,
    not when the kernel was built again under the same release (as `kdk
    kernel build` does): the module's BTF would name the last build's types
    and the new kernel refuse it. The kernel here: the host's headers
    linked into a tree of the test's own, whose Module.symvers (written by
    every kernel build) is written again."""
    real = host_kernel.build_dir.resolve()
    tree = tmp_path / "lib" / "modules" / host_kernel.release / "build"
    tree.mkdir(parents=True)
    for entry in real.iterdir():
        if entry.name != "Module.symvers":
            (tree / entry.name).symlink_to(entry.resolve())
    shutil.copyfile(real / "Module.symvers", tree / "Module.symvers")
    kernel = Kernel(host_kernel.release, host_kernel.image, tree.parent)
    src = copy_hello(tmp_path)
    stamps = tmp_path / "stamps"
    assert build(src, kernel, stamps).rebuilt
    linked = (src.path / "hello.ko").stat().st_mtime_ns
    assert not build(src, kernel, stamps).rebuilt
    shutil.copyfile(real / "Module.symvers", tree / "Module.symvers")  # built again
    assert build(src, kernel, stamps).rebuilt
    assert (src.path / "hello.ko").stat().st_mtime_ns > linked  # linked again
    assert not build(src, kernel, stamps).rebuilt


@pytest.mark.kbuild
def test_builds_once_then_only_after_a_change(tmp_path: Path, host_kernel: Kernel) -> None:
    src = copy_hello(tmp_path)
    stamps = tmp_path / "stamps"
    first = build(src, host_kernel, stamps)
    assert first.rebuilt and [ko.name for ko in first.modules] == ["hello.ko"]
    assert first.modules[0].read_bytes() == (src.path / "hello.ko").read_bytes()
    assert first.modules[0].is_relative_to(stamps / host_kernel.release)  # kept per kernel
    assert first.output == ""  # no warnings
    info = modinfo(first.modules[0])
    assert info["vermagic"].split()[0] == host_kernel.release
    assert info["name"] == "hello" and info["parm"].startswith("greeting:")
    assert not build(src, host_kernel, stamps).rebuilt
    (src.path / "hello.c").touch()
    assert build(src, host_kernel, stamps).rebuilt


@pytest.mark.kbuild
def test_compile_errors_are_shown_with_file_and_line(tmp_path: Path, host_kernel: Kernel) -> None:
    src = copy_hello(tmp_path, "broken")
    c = src.path / "broken.c"
    c.write_text(c.read_text().replace('pr_info("%s, world\\n", greeting);', "no_such_call();"))
    with pytest.raises(BuildFailed, match="broken does not compile") as err:
        build(src, host_kernel, tmp_path / "stamps")
    assert f"{c}:" in err.value.details and "error:" in err.value.details


def test_which_makefiles_drive_kbuild(tmp_path: Path) -> None:
    assert drives_kbuild(classic(tmp_path))
    (tmp_path / "Makefile").write_text("all:\n\tmake -C $(KDIR) \\\n\t\tSUBDIRS=$(PWD) modules\n")
    assert drives_kbuild(tmp_path)
    (tmp_path / "Makefile").write_text("obj-m := a.o\n# make -C /lib/modules/x/build M=.\n")
    assert not drives_kbuild(tmp_path)  # obj-m lines only: kdk runs Kbuild


def test_own_make_gets_the_build_tree_under_every_usual_name(
    tmp_path: Path, host_kernel: Kernel
) -> None:
    folder = classic(tmp_path)
    argv, cwd = make_argv(folder, host_kernel)
    assert cwd == folder and argv[0] == "make" and "-C" not in argv
    tree = str(host_kernel.build_dir)
    for name in ("KDIR", "KERNELDIR", "KERNEL_DIR", "KSRC", "KERNEL_SRC"):
        assert f"{name}={tree}" in argv
    assert f"KVER={host_kernel.release}" in argv and f"KVERSION={host_kernel.release}" in argv
    pair_argv, pair_cwd = make_argv(pair(tmp_path), host_kernel)
    assert pair_cwd is None and pair_argv[1:3] == ["-C", tree]


def test_a_folder_of_several_modules_needs_a_name() -> None:
    kos = [Path("/f/vinput.ko"), Path("/f/vkbd.ko"), Path("/f/hello-1.ko")]
    assert main_module(kos, "vkbd") == kos[1]
    assert main_module(kos, "hello_1") == kos[2]
    with pytest.raises(UnknownModule, match=r"f builds 3 modules \(vinput, vkbd, hello-1\)"):
        main_module(kos, "f")


@pytest.mark.kbuild
def test_a_classic_makefile_builds_with_its_own_make(tmp_path: Path, host_kernel: Kernel) -> None:
    folder = classic(tmp_path)
    plain = subprocess.run(
        ["make", "-C", str(host_kernel.build_dir), f"M={folder}", "modules"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert plain.returncode != 0 and "classic.h" in plain.stdout + plain.stderr
    src = ModuleSource("classic", folder)
    built = build(src, host_kernel, tmp_path / "stamps")
    assert built.rebuilt and [ko.name for ko in built.modules] == ["classic.ko"]
    assert built.cwd == folder and (folder / "classic.ko").exists()
    assert f"ran its make in {folder}: make -s" in built.how()
    assert modinfo(built.modules[0])["vermagic"].split()[0] == host_kernel.release
    again = build(src, host_kernel, tmp_path / "stamps")
    assert not again.rebuilt and "make not run" in again.how()
    assert outside_sources(folder) == [tmp_path / "include" / "classic.h"]
    os.utime(tmp_path / "include" / "classic.h", ns=(1, 1))  # the header outside changed
    assert build(src, host_kernel, tmp_path / "stamps").rebuilt


@pytest.mark.kbuild
def test_own_make_errors_show_file_and_line(tmp_path: Path, host_kernel: Kernel) -> None:
    folder = classic(tmp_path)
    c = folder / "classic.c"
    c.write_text(c.read_text().replace("return 0;", "return no_such_thing;"))
    with pytest.raises(BuildFailed, match="classic does not compile") as err:
        build(ModuleSource("classic", folder), host_kernel, tmp_path / "stamps")
    assert f"{c}:" in err.value.details and "no_such_thing" in err.value.details


@pytest.mark.kbuild
def test_each_kernel_keeps_its_own_build(tmp_path: Path) -> None:
    """A folder built for one kernel, then another: the first kernel's .ko
    (which its guest may be loading) is untouched, and needs no rebuild."""
    kernels = host_kernels()[:2]
    if len(kernels) < 2:
        pytest.skip("one kernel with headers (scripts/install-deps adds 6.12 on Debian 12)")
    src = copy_hello(tmp_path)
    stamps = tmp_path / "stamps"
    a, b = (build(src, k, stamps) for k in kernels)
    assert a.modules != b.modules
    for built, kernel in ((a, kernels[0]), (b, kernels[1])):
        assert modinfo(built.modules[0])["vermagic"].split()[0] == kernel.release
        # what an unload looks at: the build for the guest's kernel, not the folder's last
        assert kept_modules(src, kernel.release, stamps) == built.modules
    assert modinfo(built_modules(src.path)[0])["vermagic"].split()[0] == kernels[1].release
    assert kept_modules(src, "0.0-none", stamps) == []
    assert not build(src, kernels[0], stamps).rebuilt


@pytest.mark.kbuild
def test_one_build_of_a_folder_at_a_time(
    tmp_path: Path, host_kernel: Kernel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build waits while another holds its folder's lock, whatever VM
    (stamps folder) or kernel that other build is for: its make starts
    only after the holder lets go. Without the lock, make would start
    within the hold (reading a small folder's sources takes milliseconds)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    src = copy_hello(tmp_path)
    stamps = tmp_path / "vm-b" / "builds"  # another VM holds it, its own stamps elsewhere
    make_started, released = threading.Event(), threading.Event()
    during_hold: list[bool] = []

    def make(argv: list[str], cwd: Path | None) -> tuple[int, str]:
        during_hold.append(not released.is_set())
        make_started.set()
        return host_make(argv, cwd)

    worker = threading.Thread(target=build, args=(src, host_kernel, stamps), kwargs={"make": make})
    lock = build_lock(src.path)
    assert lock.is_relative_to(tmp_path / "cache")  # the user's cache, not a VM's stamps
    with file_lock(lock, 1, "held by the test"):  # as another kdk would
        worker.start()
        make_started.wait(3)  # held 3 s, or until a make started in spite of the lock
        released.set()
    worker.join(300)
    assert during_hold == [False]  # one make, started after the holder let go
    assert built_modules(src.path)  # and the build went on
