"""`kdk test`: the tests of modules and drivers, run in the running VM.

They are the same pytest files `make test` runs (`kmods/*/test_*.py`,
`drivers/*/test_*.py`); kdk runs pytest with KDK_VM naming the current VM
and sums the JUnit XML up per module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from .api import Kdk
from .errors import KdkError
from .project import ModuleSource, find_module


@dataclass
class Tally:
    """How one module's tests went."""

    name: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0


def test_files(mod: ModuleSource) -> list[Path]:
    return sorted(mod.path.glob("test_*.py"))


def select(k: Kdk, names: list[str]) -> list[ModuleSource]:
    """The named modules (all that have tests when none is named)."""
    if not names:
        return [m for m in k.modules() if test_files(m)]
    mods = [find_module(n, k.project) for n in names]
    for m in mods:
        if not test_files(m):
            raise KdkError(f"{m.name} has no tests (no test_*.py in {m.path})")
    return mods


def tally(junit: Path, mods: list[ModuleSource]) -> list[Tally]:
    """Per-module counts from pytest's JUnit XML."""
    by_folder = {m.path.name: Tally(m.name) for m in mods}
    for case in ET.parse(junit).iter("testcase"):
        parts = case.get("classname", "").split(".")
        t = next((by_folder[p] for p in parts if p in by_folder), None)
        if t is None:
            continue
        t.seconds += float(case.get("time", 0))
        if case.find("skipped") is not None:
            t.skipped += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            t.failed += 1
        else:
            t.passed += 1
    return list(by_folder.values())


def run(k: Kdk, names: list[str], junit: Path | None = None) -> tuple[int, list[Tally]]:
    """Run the tests in the running VM; (pytest's exit code, tallies).
    pytest's own compact output goes to stdout as it comes."""
    mods = select(k, names)
    k.backend.require()
    with tempfile.TemporaryDirectory(prefix="kdk-test-") as tmp:
        xml = junit or Path(tmp, "junit.xml")
        argv = [sys.executable, "-m", "pytest", "-q", "--no-header", "-rfE", "--tb=short",
                "-p", "no:cacheprovider", f"--junitxml={xml}",
                *(str(f) for m in mods for f in test_files(m))]  # fmt: skip
        env = dict(os.environ, KDK_VM=k.backend.state.path.name)
        code = subprocess.run(argv, cwd=k.project, env=env).returncode
        return code, tally(xml, mods) if xml.exists() else []
