"""A driver for the edu device written elsewhere (tests/data/edu-elsewhere:
a plain Makefile, no Kbuild, its own structure) builds with kdk from its
own folder, binds to `kdk up --device edu` and computes a factorial."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.testing import session_vm, sh

pytestmark = pytest.mark.devices("edu")

FOLDER = Path(__file__).resolve().parents[2] / "tests" / "data" / "edu-elsewhere"
FIND = "grep -l 0x11e8 /sys/bus/pci/devices/*/device | xargs -n1 dirname"


def test_a_driver_from_elsewhere_binds_and_computes(vm: Kdk) -> None:
    sh(vm, "rmmod kdkedu 2>/dev/null; true")  # one driver at a time binds the device
    try:
        run = subprocess.run(
            [sys.executable, "-m", "kdk.cli", "load", ".", "n=10"],
            cwd=FOLDER,
            env=dict(os.environ, KDK_VM=session_vm()),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert run.returncode == 0, run.stderr
        said = [line.split("] ", 1)[1] for line in run.stdout.splitlines()]
        assert said[-2:] == ["edu_poll: device id 0x010000ed", "edu_poll: 10! = 3628800"]
        bound = sh(vm, f"basename $(readlink $({FIND})/driver)").strip()
        assert bound == "edu_poll"
    finally:
        sh(vm, "rmmod edu_poll 2>/dev/null; true")
