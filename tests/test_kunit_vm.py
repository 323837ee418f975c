"""KUnit suites of module folders, run on the debug kernel (which has KUnit)
in tests/test_kbuild_vm's VM: drivers/kdkchar's ring buffer suite case by
case in pytest and JUnit, and `kdk test` of tests/data/kunit_fail, whose
suite passes, fails, skips and has a failing parameter: its summary, its
JUnit, its exit status and its KTAP."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdk.api import BootRequest, Kdk
from kdk.kernel import Kernel
from kdk.modules import kunit
from kdk.testing import sh

from .conftest import DATA, PROJECT
from .test_kbuild_vm import DEBUG_VM, debug_kernel  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.kbuild, pytest.mark.vm, pytest.mark.timeout(3600)]
KDKCHAR_C = PROJECT / "drivers/kdkchar/kdkchar_kunit.c"


@pytest.fixture(scope="module")
def kvm(debug_kernel: Kernel) -> Iterator[Kdk]:  # noqa: F811 (the fixture imported)
    k = Kdk(vm=DEBUG_VM, say=lambda _: None)
    was_up = k.backend.record() is not None
    k.up(BootRequest(debug_kernel.release))
    assert "kunit.enable=1" in sh(k, "cat /proc/cmdline").split()
    yield k
    if not was_up:
        k.down()


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """A command against the debug VM, as a user runs it (not under CI=true:
    tests/data/kunit_fail's skip is on purpose)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "KDK_KERNEL")}
    return subprocess.run(
        argv,
        cwd=PROJECT,
        env=dict(env, KDK_VM=DEBUG_VM),
        capture_output=True,
        text=True,
        timeout=600,
    )


def cases(junit: Path) -> dict[str, tuple[str, str]]:
    """JUnit testcase name -> (its outcome, its message)."""
    out = {}
    for case in ET.parse(junit).iter("testcase"):
        child = next(iter(case), None)
        outcome = "passed" if child is None else child.tag
        out[str(case.get("name"))] = (outcome, "" if child is None else child.get("message", ""))
    return out


def test_the_kdkchar_ring_suite_is_a_pytest_test_per_case(kvm: Kdk, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    res = run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            str(KDKCHAR_C),
        ]
    )
    assert res.returncode == 0, res.stdout
    (suite,) = kunit.suites(KDKCHAR_C)
    assert len(suite.cases) == 11
    assert cases(junit) == {f"kdkchar_ring[{c}]": ("passed", "") for c in suite.cases}
    # the suite ran (the kernel marks that with taint N), and its module is unloaded
    assert int(sh(kvm, "cat /proc/sys/kernel/tainted")) >> 18 & 1
    assert not kvm.exec("test -d /sys/module/kdkchar_kunit").ok


def test_kdk_test_shows_a_failing_case_its_diagnostics_and_the_ktap(
    kvm: Kdk, tmp_path: Path
) -> None:
    junit = tmp_path / "junit.xml"
    folder = DATA / "kunit_fail"
    res = run(
        [sys.executable, "-m", "kdk.cli", "test", str(folder), "--junit", str(junit), "--ktap"]
    )
    assert res.returncode == 1, res.stdout + res.stderr
    c_file = folder / "kunit_fail.c"
    assert cases(junit) == {
        "kdk_kunit_fail[passes]": ("passed", ""),
        "kdk_kunit_fail[fails]": (
            "failure",
            f"Failed: kdk_kunit_fail.fails: fail\n# fails: EXPECTATION FAILED at {c_file}:20\n"
            "Expected answer == 42, but\nanswer == 41",
        ),
        "kdk_kunit_fail[skips]": ("skipped", "KUnit: no hardware here"),
        "kdk_kunit_fail[odd]": (
            "failure",
            f"Failed: kdk_kunit_fail.odd: fail\nfail: value 2\n"
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
