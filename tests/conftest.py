"""What the tests share besides kdk's own pytest plugin (kdk.testing).

Pure tests need nothing. `kbuild` tests build on the host against the
newest installed kernel headers. `vm` tests use the plugin's `vm` fixture:
one guest per session, its own (KDK_VM=pytest) unless KDK_VM names one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
