"""KUnit suites as pytest tests.

A C file of a module folder that defines `kunit_test_suite(...)` is
collected like a test file: one test per KUnit case, named
`<file>.c::<suite>[<case>]` (its JUnit testcase too), so `pytest
drivers/kdkchar`, `kdk test kdkchar` and `make test` run them with the
module's Python tests. The first case of a file loads its module in the
session's VM (which runs every suite of it, kdk.modules.kunit); each case
then passes, fails with KUnit's diagnostic lines, or skips with KUnit's
reason. A case the run never reached (a crash) fails saying so. On a
kernel without KUnit the cases skip, with one line naming why, before any
VM is booted. `--kdk-ktap` prints the KTAP of every module run at the end.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ..api import Kdk
from ..kernel import Kernel
from ..klog.ktap import Status
from ..modules import kunit
from ..project import is_module_folder

_RUNS = pytest.StashKey[dict[Path, "kunit.Run | Exception"]]()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if (
        file_path.suffix == ".c"
        and is_module_folder(file_path.parent)
        and kunit.defines_suites(file_path)
    ):
        return KUnitFile.from_parent(parent, path=file_path)
    return None


class KUnitFile(pytest.Module):
    """A KUnit test module's C file: a test function per suite, parametrized
    by its cases (read from the C, so they are known before any run)."""

    def _getobj(self) -> types.ModuleType:
        suites = kunit.suites(self.path)
        if not suites or not all(s.cases for s in suites):
            raise self.CollectError(
                f"{self.path.name} registers KUnit suites, but kdk reads no suite with cases in "
                "it (a `struct kunit_suite` with .name and .test_cases, an array of KUNIT_CASE)"
            )
        mod = types.ModuleType(self.path.stem)
        for suite in suites:
            setattr(mod, suite.name, _suite_test(suite))
        return mod

    def istestfunction(self, obj: object, name: str) -> bool:
        return getattr(obj, "kdk_kunit_suite", None) == name


def _suite_test(suite: kunit.Suite) -> Callable[..., None]:
    @pytest.mark.vm
    @pytest.mark.parametrize("case", suite.cases)
    def test(case: str, kunit_run: kunit.Run) -> None:
        ran = kunit_run.suite(suite.name)
        if ran is None:
            names = ", ".join(s.name for s in kunit_run.suites) or "none"
            pytest.fail(f"suite {suite.name} did not run (the suites that ran: {names})", False)
        result = ran.find(case)
        if result is None:
            why = ran.reason if ran.status is Status.CRASH else "no result in its KTAP"
            pytest.fail(f"{suite.name}.{case}: {why}", False)
        if result.status is Status.SKIP:
            pytest.skip(f"KUnit: {result.reason}")
        if result.status is not Status.PASS:
            pytest.fail(f"{suite.name}.{case}: {result.status.value}\n{result.failure()}", False)

    test.kdk_kunit_suite = suite.name  # type: ignore[attr-defined]
    return test


@pytest.fixture
def kunit_run(request: pytest.FixtureRequest, kdk_kernel: Kernel) -> kunit.Run:
    """The run of the test's KUnit module in the session's VM, once per
    session and file."""
    reason = kunit.unavailable(kdk_kernel)
    if reason:
        pytest.skip(reason)
    c_file = Path(request.path)
    runs = request.config.stash.setdefault(_RUNS, {})
    if c_file not in runs:
        vm: Kdk = request.getfixturevalue("vm")
        try:
            runs[c_file] = vm.kunit(f"{c_file.parent}/{kunit.module_of(c_file)}")
        except Exception as e:  # each case of the file fails with it
            runs[c_file] = e
    run = runs[c_file]
    if isinstance(run, Exception):
        raise run
    return run


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    """With --kdk-ktap: the KTAP of every KUnit module run, as printed."""
    if not config.getoption("--kdk-ktap"):
        return
    for c_file, run in config.stash.get(_RUNS, {}).items():
        if isinstance(run, kunit.Run):
            terminalreporter.section(f"KTAP of {run.module} ({c_file.name})")
            for line in run.printed:
                terminalreporter.write_line(line)
