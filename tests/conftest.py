"""What the tests share besides kdk's own pytest plugin (kdk.testing).

Pure tests need nothing. `kbuild` tests build on the host against the
newest installed kernel headers. `vm` tests use the plugin's `vm` fixture:
one guest per session, its own (KDK_VM=pytest) unless KDK_VM names one.
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

from kdk.api import Kdk
from kdk.kernel import Kernel
from kdk.testing import session_vm

DATA = Path(__file__).parent / "data"
PROJECT = Path(__file__).resolve().parent.parent


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
