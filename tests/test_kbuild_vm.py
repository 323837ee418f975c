"""A kernel kdk built is a first-class kernel: the debug build boots in a
VM of its own, modules build against its tree and load, the guest sees its
own /lib/modules, its in-tree modules modprobe, and its checks are on.

The build is the real one (`kdk kernel build --debug`), reused from the
user's cache when its inputs did not change (`make test` builds it first,
with its progress line); on a cold machine the fixture builds it.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator

import pytest

from kdk.api import BootRequest, Kdk
from kdk.errors import KernelReport
from kdk.kbuild import build
from kdk.kernel import Kernel
from kdk.modules.info import modinfo
from kdk.testing import session_vm, sh
from kdk.ui import say

pytestmark = [pytest.mark.kbuild, pytest.mark.vm, pytest.mark.timeout(3600)]
DEBUG_VM = f"{session_vm()}-kdk-debug"  # each pytest-xdist worker's own


@pytest.fixture(scope="module")
def debug_kernel() -> Kernel:
    plan = build.plan(None, "debug", [], os.cpu_count() or 1, say)
    return build.build(plan, say, lambda step: say(f"kdk kernel build: {step}")).kernel


@pytest.fixture(scope="module")
def dvm(debug_kernel: Kernel) -> Iterator[Kdk]:
    k = Kdk(vm=DEBUG_VM, say=say)
    was_up = k.backend.record() is not None
    rec, _ = k.up(BootRequest(debug_kernel.release))
    assert rec.kernel == debug_kernel.release
    yield k
    if not was_up:
        k.down()


def test_the_guest_runs_the_built_kernel_with_its_checks(dvm: Kdk, debug_kernel: Kernel) -> None:
    release = debug_kernel.release
    assert release.endswith("-kdk-debug")
    assert sh(dvm, "uname -r").strip() == release
    assert "kasan_multi_shot" in sh(dvm, "cat /proc/cmdline").split()
    # Its own modules tree, where modprobe and bcc look; the build tree's
    # headers through it.
    assert sh(dvm, f"test -s /lib/modules/{release}/modules.dep && echo ok").strip() == "ok"
    assert "VERSION = 6" in sh(dvm, f"head -3 /lib/modules/{release}/source/Makefile")
    sh(dvm, f"test -f /lib/modules/{release}/build/include/generated/autoconf.h")
    for path in (
        "/sys/kernel/debug/kmemleak",
        "/sys/kernel/debug/failslab",
        "/sys/kernel/debug/fail_page_alloc",
        "/sys/kernel/debug/kunit",
        "/proc/lockdep",
        "/sys/kernel/btf/vmlinux",
    ):
        sh(dvm, f"test -e {path}")


def test_a_module_builds_against_its_tree_and_loads(dvm: Kdk, debug_kernel: Kernel) -> None:
    res = dvm.load("hello")
    try:
        assert res.ko is not None
        assert modinfo(res.ko)["vermagic"].split()[0] == debug_kernel.release
        assert res.log[-1].text == "hello: hello, world"
        assert sh(dvm, "cat /sys/module/hello/parameters/greeting").strip() == "hello"
    finally:
        dvm.unload("hello")
    assert not dvm.exec("test -d /sys/module/hello").ok


def test_its_own_modules_modprobe(dvm: Kdk) -> None:
    """crc7 is a module of this kernel (kdk.config): modprobe finds it in
    the bound modules tree; a dummy link makes the kernel load `dummy`
    itself, through the guest's modprobe."""
    sh(dvm, "rmmod crc7 dummy 2>/dev/null; true")
    assert not dvm.exec("test -d /sys/module/crc7").ok
    sh(dvm, "modprobe crc7")
    assert sh(dvm, "cat /sys/module/crc7/initstate").strip() == "live"
    sh(dvm, "ip link add kdkdummy0 type dummy")
    try:
        assert sh(dvm, "cat /sys/module/dummy/initstate").strip() == "live"
        assert sh(dvm, "cat /sys/class/net/kdkdummy0/type").strip() == "1"  # ARPHRD_ETHER
    finally:
        sh(dvm, "ip link del kdkdummy0")
    sh(dvm, "rmmod crc7 dummy")
    assert not dvm.exec("test -d /sys/module/crc7").ok


def test_an_unchanged_build_does_nothing(debug_kernel: Kernel) -> None:
    plan = build.plan(None, "debug", [], 1, say)
    res = build.build(plan, say, say)
    assert not res.built and res.kernel == debug_kernel


def test_kasan_reports_a_modules_write_past_an_object_when_it_happens(dvm: Kdk) -> None:
    """Without slub_debug: KASAN (generic) sees the write itself, and kdk's
    console watcher names the module's function; the kernel goes on."""
    assert "slub_debug" not in sh(dvm, "cat /proc/cmdline")
    dvm.load("faulty")
    pid = dvm.backend.require().pid
    try:
        with pytest.raises(KernelReport) as err:
            dvm.exec("echo overflow > /sys/kernel/debug/kdk_faulty/trigger")
        assert str(err.value) == (
            "the guest kernel reported KASAN: slab-out-of-bounds in faulty_overflow [faulty]"
        )
        assert dvm.backend.require().pid == pid  # not rebooted
    finally:
        dvm.unload("faulty")


def test_gdb_has_its_full_debug_info_and_the_kernels_gdb_scripts(dvm: Kdk) -> None:
    """kdk gdb reads the build tree's vmlinux: types and source lines of
    the kernel proper, and lx- commands (scripts/gdb) that see the guest."""
    dvm.load("hello")
    try:
        script = [
            "-batch",
            "-ex",
            "p init_uts_ns.name.release",
            "-ex",
            "info line vfs_write",
            "-ex",
            "lx-lsmod",
        ]
        out = subprocess.run(
            dvm.gdb_command(None, script), capture_output=True, text=True, timeout=300
        ).stdout
    finally:
        dvm.unload("hello")
    release = sh(dvm, "uname -r").strip()
    assert f'$1 = "{release}"' in out
    assert 'of "/' in out and 'fs/read_write.c" starts at address' in out
    assert re.search(r"^0x[0-9a-f]+ +hello +\d+ +0$", out, re.M), out
