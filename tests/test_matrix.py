"""The kernel matrix: every module builds cleanly on every installed kernel
and every kernel kdk built (make test builds the debug kernel first), and
`kdk test --kernels all` runs the same tests on each, in a VM of its own.

On Debian 12, scripts/install-deps installs Linux 6.12 beside 6.1; with one
kernel only, the matrix tests skip and say so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kdk.kernel import Kernel, all_kernels, host_kernels
from kdk.modules.build import compiler_output
from kdk.project import known_modules
from kdk.testing import session_vm
from kdk.testrun import KernelRun, Tally, matrix_table

from .conftest import PROJECT, kdk_cli

ONE_KERNEL = (
    "one kernel with headers: no matrix (scripts/install-deps adds Linux 6.12 on Debian 12)"
)
BUILD_PRODUCTS = shutil.ignore_patterns(
    ".*",
    "*.o",
    "*.ko",
    "*.mod",
    "*.mod.c",
    "modules.order",
    "Module.symvers",
    "test_*",
    "__pycache__",
    "*.md",
)


@pytest.mark.kbuild
@pytest.mark.parametrize("kernel", all_kernels(), ids=lambda k: k.release)
def test_every_module_builds_without_a_warning_also_with_w1(kernel: Kernel, tmp_path: Path) -> None:
    """One Kbuild run (W=1) over copies of every module folder: the tree's
    own build products, which the VM tests load, stay as they are."""
    mods = known_modules(PROJECT)
    kbuild = []
    for m in mods:
        rel = m.path.relative_to(PROJECT)
        shutil.copytree(m.path, tmp_path / rel, ignore=BUILD_PRODUCTS)
        kbuild.append(f"obj-m += {rel}/\n")
    (tmp_path / "Kbuild").write_text("".join(kbuild))
    proc = subprocess.run(
        ["make", "-C", str(kernel.build_dir), f"M={tmp_path}", "W=1", "-j2", "modules"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = compiler_output(proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and output == "", output
    missing = [
        m.name for m in mods if not list((tmp_path / m.path.relative_to(PROJECT)).glob("*.ko"))
    ]
    assert missing == []


def test_the_table_is_module_by_kernel() -> None:
    runs = [
        KernelRun("6.1.0-56-amd64", "v-6.1", 1, [Tally("hello", 3), Tally("kdkchar", 9, 1)]),
        KernelRun("6.12.117+deb12-amd64", "v-6.12", 2, []),
    ]
    assert matrix_table(runs).splitlines() == [
        "module   6.1.0-56-amd64  6.12.117+deb12-amd64",
        "hello    ok 3/3          no result (2)",
        "kdkchar  FAIL 9/10       no result (2)",
    ]


@pytest.mark.vm
def test_kdk_test_runs_the_tests_on_every_kernel() -> None:
    """hello's tests check that the guest runs the kernel asked for and that
    the module loaded was built for it; here they pass on every kernel."""
    kernels = all_kernels()  # the debug kernel make test builds among them
    if len(host_kernels()) < 2:
        pytest.skip(ONE_KERNEL)
    res = kdk_cli("test", "hello", "--kernels", "all", "-j", "2", timeout=1200)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    header = next(line for line in lines if line.startswith("module "))
    row = next(line for line in lines if line.startswith("hello "))
    assert re.split(r"\s{2,}", header)[1:] == [k.release for k in kernels]
    cells = re.split(r"\s{2,}", row)[1:]
    assert len(cells) == len(kernels) and all(c.startswith("ok ") for c in cells), row


def test_each_kernel_and_each_xdist_worker_but_the_first_gets_its_own_vm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for var in ("KDK_VM", "KDK_KERNEL", "PYTEST_XDIST_WORKER"):
        monkeypatch.delenv(var, raising=False)
    assert session_vm() == "pytest"
    monkeypatch.setenv("KDK_KERNEL", "6.12")
    assert session_vm() == "pytest-6.12"
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")  # the first worker: the VM named
    assert session_vm() == "pytest-6.12"
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    assert session_vm() == "pytest-6.12-gw1"
    monkeypatch.setenv("KDK_VM", "mine")
    assert session_vm() == "mine-gw1"


def test_fewer_than_one_vm_is_one_line() -> None:
    r = kdk_cli("test", "hello", "-j", "0")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "--jobs 0: the tests need at least one VM" in r.stderr


def test_ktap_with_more_than_one_vm_is_one_line() -> None:
    r = kdk_cli("test", "hello", "-j", "2", "--ktap")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "--ktap prints the KUnit suites of one VM" in r.stderr
