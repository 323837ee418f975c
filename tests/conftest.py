"""What the tests share besides kdk's own pytest plugin (kdk.testing).

Pure tests need nothing. `kbuild` tests build on the host against the
newest installed kernel headers. `vm` tests use the plugin's `vm` fixture:
one guest per session, its own (KDK_VM=pytest) unless KDK_VM names one.
The debug kernel's tests (test_kbuild_vm, test_faultinject_vm,
test_reports_vm) share `debug_vm`, one VM of that kernel per session: a
boot of it costs 15-90 s under TCG.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdk.api import BootRequest, Kdk
from kdk.kbuild import build
from kdk.kernel import Kernel
from kdk.testing import guest_cpus, session_vm
from kdk.ui import say

DATA = Path(__file__).parent / "data"
PROJECT = Path(__file__).resolve().parent.parent
DEBUG_VM = f"{session_vm()}-kdk-debug"  # each pytest-xdist worker's own


@pytest.fixture(scope="session")
def debug_kernel() -> Kernel:
    """kdk's debug kernel (`kdk kernel build --debug`), built when missing
    or out of date (make test builds it first, with its progress line)."""
    plan = build.plan(None, "debug", [], os.cpu_count() or 1, say)
    return build.build(plan, say, lambda step: say(f"kdk kernel build: {step}")).kernel


def kernel_vm(kernel: Kernel, name: str) -> Iterator[Kdk]:
    """A VM named `name` of `kernel`, stopped at the end unless it was up before."""
    k = Kdk(vm=name, say=say)
    was_up = k.backend.record() is not None
    rec, _ = k.up(BootRequest(kernel.release, cpus=guest_cpus()))
    assert rec.kernel == kernel.release
    yield k
    if not was_up:
        k.down()


@pytest.fixture(scope="session")
def debug_vm(debug_kernel: Kernel) -> Iterator[Kdk]:
    """A VM of the debug kernel (one per session)."""
    yield from kernel_vm(debug_kernel, DEBUG_VM)


def kdk_cli(
    *args: str, input: bytes | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the `kdk` command as a user would, against the session's VM."""
    env = dict(os.environ, KDK_VM=session_vm())
    return subprocess.run(
        [sys.executable, "-m", "kdk.cli", *args],
        input=input.decode() if input is not None else None,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=PROJECT,
    )


@pytest.fixture(scope="session")
def host_kernel(kdk_kernel: Kernel) -> Kernel:
    """The kernel the test VM boots and modules build for."""
    return kdk_kernel


@pytest.fixture
def scratch(vm: Kdk) -> Iterator[Path]:
    """A project folder the running guest sees at the same path: in the VM's
    state folder, which the guest mounts (a project elsewhere would need a
    VM of its own)."""
    folder = vm.state / "scratch" / uuid.uuid4().hex[:8]
    folder.mkdir(parents=True)
    yield folder
    shutil.rmtree(folder)
