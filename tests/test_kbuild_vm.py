"""A kernel kdk built is a first-class kernel: the debug build boots in a
VM of its own, modules build against its tree and load, the guest sees its
own /lib/modules, its in-tree modules modprobe, and its checks are on; it
has KUnit: drivers/kdkchar's ring buffer suite runs case by case in pytest
and JUnit, and `kdk test` of a folder with tests/data/kunit_fail.c, whose
suite passes, fails, skips and has a failing parameter, gives its summary,
JUnit, exit status and KTAP (one VM for all: a boot of this kernel costs
30-90 s under TCG).

The build is the real one (`kdk kernel build --debug`), reused from the
user's cache when its inputs did not change (`make test` builds it first,
with its progress line); on a cold machine the fixture builds it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.errors import KernelReport
from kdk.kbuild import build
from kdk.kernel import Kernel
from kdk.modules.info import modinfo
from kdk.testing import sh
from kdk.ui import say

from . import usermods
from .test_kunit import RING_CASES, run_tests

pytestmark = [pytest.mark.kbuild, pytest.mark.vm, pytest.mark.timeout(3600)]
TAINT_TEST = 1 << 18  # N: an in-kernel test has been run


def test_the_guest_runs_the_built_kernel_with_its_checks(
    debug_vm: Kdk, debug_kernel: Kernel
) -> None:
    release = debug_kernel.release
    assert release.endswith("-kdk-debug")
    assert sh(debug_vm, "uname -r").strip() == release
    cmdline = sh(debug_vm, "cat /proc/cmdline").split()
    assert "kasan_multi_shot" in cmdline and "kunit.enable=1" in cmdline
    # Its own modules tree, where modprobe and bcc look; the build tree's
    # headers through it.
    assert sh(debug_vm, f"test -s /lib/modules/{release}/modules.dep && echo ok").strip() == "ok"
    assert "VERSION = 6" in sh(debug_vm, f"head -3 /lib/modules/{release}/source/Makefile")
    sh(debug_vm, f"test -f /lib/modules/{release}/build/include/generated/autoconf.h")
    for path in (
        "/sys/kernel/debug/kmemleak",
        "/sys/kernel/debug/failslab",
        "/sys/kernel/debug/fail_page_alloc",
        "/sys/kernel/debug/kunit",
        "/proc/lockdep",
        "/sys/kernel/btf/vmlinux",
    ):
        sh(debug_vm, f"test -e {path}")


def test_a_module_builds_against_its_tree_and_loads(debug_vm: Kdk, debug_kernel: Kernel) -> None:
    res = debug_vm.load("hello")
    try:
        assert res.ko is not None
        assert modinfo(res.ko)["vermagic"].split()[0] == debug_kernel.release
        assert res.log[-1].text == "hello: hello, world"
        assert sh(debug_vm, "cat /sys/module/hello/parameters/greeting").strip() == "hello"
    finally:
        debug_vm.unload("hello")
    assert not debug_vm.exec("test -d /sys/module/hello").ok


def test_its_own_modules_modprobe(debug_vm: Kdk) -> None:
    """crc7 is a module of this kernel (kdk.config): modprobe finds it in
    the bound modules tree; a dummy link makes the kernel load `dummy`
    itself, through the guest's modprobe."""
    sh(debug_vm, "rmmod crc7 dummy 2>/dev/null; true")
    assert not debug_vm.exec("test -d /sys/module/crc7").ok
    sh(debug_vm, "modprobe crc7")
    assert sh(debug_vm, "cat /sys/module/crc7/initstate").strip() == "live"
    sh(debug_vm, "ip link add kdkdummy0 type dummy")
    try:
        assert sh(debug_vm, "cat /sys/module/dummy/initstate").strip() == "live"
        assert sh(debug_vm, "cat /sys/class/net/kdkdummy0/type").strip() == "1"  # ARPHRD_ETHER
    finally:
        sh(debug_vm, "ip link del kdkdummy0")
    sh(debug_vm, "rmmod crc7 dummy")
    assert not debug_vm.exec("test -d /sys/module/crc7").ok


def test_an_unchanged_build_does_nothing(debug_kernel: Kernel) -> None:
    plan = build.plan(None, "debug", [], 1, say)
    res = build.build(plan, say, say)
    assert not res.built and res.kernel == debug_kernel


def test_kasan_reports_a_modules_write_past_an_object_when_it_happens(debug_vm: Kdk) -> None:
    """Without slub_debug's checks: KASAN (generic) sees the write itself,
    and kdk's console watcher names the module's function; the kernel goes
    on. (slub_debug=A only marks caches for fault injection.)"""
    assert re.findall(r"slub_debug=([A-Z]*)", sh(debug_vm, "cat /proc/cmdline")) == ["A"]
    debug_vm.load("faulty")
    pid = debug_vm.backend.require().pid
    try:
        with pytest.raises(KernelReport) as err:
            debug_vm.exec("echo overflow > /sys/kernel/debug/kdk_faulty/trigger")
        assert str(err.value) == (
            "the guest kernel reported KASAN: slab-out-of-bounds in faulty_overflow [faulty]"
        )
        assert debug_vm.backend.require().pid == pid  # not rebooted
    finally:
        debug_vm.unload("faulty")


def test_gdb_has_its_full_debug_info_and_the_kernels_gdb_scripts(debug_vm: Kdk) -> None:
    """kdk gdb reads the build tree's vmlinux: types and source lines of
    the kernel proper, and lx- commands (scripts/gdb) that see the guest."""
    debug_vm.load("hello")
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
            debug_vm.gdb_command(None, script), capture_output=True, text=True, timeout=300
        ).stdout
    finally:
        debug_vm.unload("hello")
    release = sh(debug_vm, "uname -r").strip()
    assert f'$1 = "{release}"' in out
    assert 'of "/' in out and 'fs/read_write.c" starts at address' in out
    assert re.search(r"^0x[0-9a-f]+ +hello +\d+ +0$", out, re.M), out


@pytest.fixture
def failing(debug_vm: Kdk) -> Iterator[Path]:
    """A module folder with tests/data/kunit_fail.c, where the guest sees it."""
    root = debug_vm.state / "scratch" / uuid.uuid4().hex[:8]
    yield usermods.kunit_fail(root)
    shutil.rmtree(root)


def test_kdk_test_gives_each_kunit_case_a_result_diagnostics_and_ktap(
    debug_vm: Kdk, failing: Path, tmp_path: Path
) -> None:
    """`kdk test kdkchar_kunit` (the suite alone, not kdkchar's own tests)
    and a folder whose suite fails, skips and has a failing parameter."""
    junit = tmp_path / "junit.xml"
    argv = ["kdk.cli", "test", "kdkchar_kunit", str(failing), "--junit", str(junit), "--ktap"]
    res, cases = run_tests(argv, junit, KDK_VM=debug_vm.backend.state.path.name)
    assert res.returncode == 1, res.stdout + res.stderr
    c_file = failing / "kunit_fail.c"
    suite = f"{'.'.join(c_file.relative_to(debug_vm.project).parts)}::kdk_kunit_fail"
    assert cases == {
        **{
            f"drivers.kdkchar.kdkchar_kunit.c::kdkchar_ring[{c}]": ("passed", "")
            for c in RING_CASES
        },
        f"{suite}[passes]": ("passed", ""),
        f"{suite}[fails]": (
            "failure",
            f"Failed: kdk_kunit_fail.fails: fail\n# fails: EXPECTATION FAILED at {c_file}:20\n"
            "Expected answer == 42, but\n    answer == 41",
        ),
        f"{suite}[skips]": ("skipped", "KUnit: no hardware here"),
        f"{suite}[odd]": (
            "failure",
            "Failed: kdk_kunit_fail.odd: fail\nfail: value 2\n"
            f"    # odd: EXPECTATION FAILED at {c_file}:41\n"
            "    Expected *v % 2 == 1, but\n        *v % 2 == 0",
        ),
    }
    lines = res.stdout.splitlines()
    assert any(ln.startswith("kdkchar      ok    11 passed, 0 failed, 0 skipped ") for ln in lines)
    assert any(ln.startswith("kunit_fail   FAIL  1 passed, 2 failed, 1 skipped ") for ln in lines)
    ktap = lines[lines.index("    # Subtest: kdk_kunit_fail") :]
    assert "    not ok 2 fails" in ktap and "        not ok 2 value 2" in ktap
    assert "not ok 1 kdk_kunit_fail" in ktap
    assert "    ok 11 replace_keeps_bytes_in_order" in lines
    # the suites ran (the kernel says so with taint N); their modules are unloaded again
    assert int(sh(debug_vm, "cat /proc/sys/kernel/tainted")) & TAINT_TEST
    assert not debug_vm.exec(
        "test -d /sys/module/kdkchar_kunit || test -d /sys/module/kunit_fail"
    ).ok
