"""KUnit suites of module folders, run on the debug kernel (which has KUnit)
in tests/test_kbuild_vm's VM: drivers/kdkchar's ring buffer suite case by
case in pytest and JUnit, and `kdk test` of a folder with
tests/data/kunit_fail.c, whose suite passes, fails, skips and has a failing
parameter: its summary, its JUnit, its exit status and its KTAP."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdk.api import BootRequest, Kdk
from kdk.kernel import Kernel
from kdk.testing import sh

from . import usermods
from .test_kbuild_vm import DEBUG_VM, debug_kernel  # noqa: F401 (a fixture)
from .test_kunit import KDKCHAR_C, RING_CASES, run_tests

pytestmark = [pytest.mark.kbuild, pytest.mark.vm, pytest.mark.timeout(3600)]
TAINT_TEST = 1 << 18  # N: an in-kernel test has been run


@pytest.fixture(scope="module")
def kvm(debug_kernel: Kernel) -> Iterator[Kdk]:  # noqa: F811 (the fixture imported)
    k = Kdk(vm=DEBUG_VM, say=lambda _: None)
    was_up = k.backend.record() is not None
    k.up(BootRequest(debug_kernel.release))
    assert "kunit.enable=1" in sh(k, "cat /proc/cmdline").split()
    yield k
    if not was_up:
        k.down()


@pytest.fixture
def failing(kvm: Kdk) -> Iterator[Path]:
    """A module folder with tests/data/kunit_fail.c, where the guest sees it."""
    root = kvm.state / "scratch" / uuid.uuid4().hex[:8]
    yield usermods.kunit_fail(root)
    shutil.rmtree(root)


def test_the_kdkchar_ring_suite_is_a_pytest_test_per_case(kvm: Kdk, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    res, cases = run_tests(
        ["pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", str(KDKCHAR_C)],
        junit,
        KDK_VM=DEBUG_VM,
    )
    assert res.returncode == 0, res.stdout
    assert cases == {
        f"drivers.kdkchar.kdkchar_kunit.c::kdkchar_ring[{c}]": ("passed", "") for c in RING_CASES
    }
    # the suite ran (the kernel says so with taint N), and its module is unloaded again
    assert int(sh(kvm, "cat /proc/sys/kernel/tainted")) & TAINT_TEST
    assert not kvm.exec("test -d /sys/module/kdkchar_kunit").ok


def test_kdk_test_shows_a_failing_case_its_diagnostics_and_the_ktap(
    kvm: Kdk, failing: Path, tmp_path: Path
) -> None:
    junit = tmp_path / "junit.xml"
    res, cases = run_tests(
        ["kdk.cli", "test", str(failing), "--junit", str(junit), "--ktap"], junit, KDK_VM=DEBUG_VM
    )
    assert res.returncode == 1, res.stdout + res.stderr
    c_file = failing / "kunit_fail.c"
    suite = f"{'.'.join(c_file.relative_to(kvm.project).parts)}::kdk_kunit_fail"
    assert cases == {
        f"{suite}[passes]": ("passed", ""),
        f"{suite}[fails]": (
            "failure",
            f"Failed: kdk_kunit_fail.fails: fail\n# fails: EXPECTATION FAILED at {c_file}:20\n"
            "Expected answer == 42, but\nanswer == 41",
        ),
        f"{suite}[skips]": ("skipped", "KUnit: no hardware here"),
        f"{suite}[odd]": (
            "failure",
            "Failed: kdk_kunit_fail.odd: fail\nfail: value 2\n"
            f"    # odd: EXPECTATION FAILED at {c_file}:41\n"
            "    Expected *v % 2 == 1, but\n    *v % 2 == 0",
        ),
    }
    lines = res.stdout.splitlines()
    assert any(ln.startswith("kunit_fail   FAIL  1 passed, 2 failed, 1 skipped ") for ln in lines)
    ktap = lines[lines.index("    KTAP version 1") :]
    assert "    not ok 2 fails" in ktap and "        not ok 2 value 2" in ktap
    assert "not ok 1 kdk_kunit_fail" in ktap
    assert not kvm.exec("test -d /sys/module/kunit_fail").ok
