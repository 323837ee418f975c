"""The kernel matrix: every module builds cleanly on every installed kernel
and every kernel kdk built (make test builds the debug kernel first), and
`kdk test --kernels all` runs the same tests on each, in a VM of its own.

On Debian 12, scripts/install-deps installs Linux 6.12 beside 6.1; with one
kernel only, the matrix tests skip and say so.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.errors import KdkError
from kdk.kernel import Kernel, all_kernels, host_kernels
from kdk.modules.build import compiler_output
from kdk.project import known_modules
from kdk.testing import guest_cpus, session_vm
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


def test_the_cores_are_shared_out_among_the_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KDK_CPUS", "PYTEST_XDIST_WORKER_COUNT"):
        monkeypatch.delenv(var, raising=False)
    assert guest_cpus() is None  # kdk's default
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    assert guest_cpus() == max(1, cores // 2)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(cores + 1))
    assert guest_cpus() == 1
    monkeypatch.setenv("KDK_CPUS", "3")
    assert guest_cpus() == 3
    monkeypatch.setenv("KDK_CPUS", "0")
    with pytest.raises(KdkError, match=r"^KDK_CPUS=0: a number of CPUs \(1 or more\)$"):
        guest_cpus()


@pytest.mark.vm
def test_jobs_run_in_vms_of_the_run_with_the_cores_shared_out(vm: Kdk) -> None:
    """`kdk test -j 2`: VMs of the running VM's kernel that the run boots,
    each with half the host's cores, and stops; the running VM is left as
    it was."""
    running = vm.backend.require()
    states = [Kdk(vm=f"{session_vm()}-j2{w}").backend.state for w in ("", "-gw1")]
    for state in states:  # an earlier run's
        state.file("qemu.cmdline").unlink(missing_ok=True)
    res = kdk_cli("test", "hello", "sysfs", "-j", "2", timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    assert re.search(r"^hello +ok +4 passed, 0 failed", res.stdout, re.M), res.stdout
    assert re.search(r"^sysfs +ok +\d+ passed, 0 failed", res.stdout, re.M), res.stdout
    booted = [s for s in states if s.file("qemu.cmdline").exists()]
    assert booted, "the run booted no VM of its own"
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    for state in booted:
        argv = shlex.split(state.file("qemu.cmdline").read_text())
        assert argv[argv.index("-smp") + 1] == str(share)
        assert running.kernel in argv[argv.index("-kernel") + 1]
        assert state.read() is None  # stopped
    assert vm.backend.require().pid == running.pid


def test_fewer_than_one_vm_is_one_line() -> None:
    r = kdk_cli("test", "hello", "-j", "0")
    assert r.returncode == 2  # a usage error
    assert r.stderr.count("\n") == 1 and "--jobs 0: the tests need at least one VM" in r.stderr


def test_ktap_with_more_than_one_vm_is_one_line() -> None:
    r = kdk_cli("test", "hello", "-j", "2", "--ktap")
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "--ktap prints the KUnit suites of one VM" in r.stderr
