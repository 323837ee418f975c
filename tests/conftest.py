"""Fixtures shared by the test tiers.

Pure tests need nothing. `kbuild` tests build on the host against the
newest installed kernel headers. `vm` tests share one guest per session,
booted under its own name (KDK_VM=pytest) so a developer's own VM is left
alone, and stopped at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.kernel import Kernel, select_kernel

DATA = Path(__file__).parent / "data"
PROJECT = Path(__file__).resolve().parent.parent
TEST_VM = "pytest"


def kdk_cli(
    *args: str, input: bytes | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the `kdk` command as a user would, against the test VM."""
    env = dict(os.environ, KDK_VM=TEST_VM)
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
def host_kernel() -> Kernel:
    """The kernel the test VM boots and modules build for."""
    return select_kernel()


@pytest.fixture(scope="session")
def kdk() -> Iterator[Kdk]:
    """A Kdk for the test VM; the VM is stopped when the session ends."""
    k = Kdk(vm=TEST_VM)
    yield k
    k.down()


@pytest.fixture
def vm(kdk: Kdk) -> Kdk:
    """The test VM, up (booted on first use, and again if a test stopped it)."""
    kdk.up()
    return kdk
