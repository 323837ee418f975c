"""KCSAN (`kdk kernel build --kcsan`) reports a module's data race in
kdk's words: kmods/sync's race file, run in a VM of that kernel, gives one
short block naming the check, the racing function and its module and both
accesses, and KernelReport (exit 6), not a crash.

The KCSAN kernel is a build of its own (KCSAN excludes KASAN), about as
long as the debug kernel's; `make test` builds only the debug kernel (its
time budget on a fresh machine), so these tests run where the KCSAN kernel
is in the cache and are otherwise a skip listed in pyproject.toml.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from kdk.api import Kdk
from kdk.kbuild import build
from kdk.testing import expect_report, session_vm
from kdk.ui import say

from .conftest import kernel_vm

pytestmark = [pytest.mark.kbuild, pytest.mark.vm, pytest.mark.timeout(1800)]
NOT_BUILT = "no current KCSAN kernel in the cache (a build of its own: `kdk kernel build --kcsan`)"


@pytest.fixture(scope="module")
def kcsan_vm() -> Iterator[Kdk]:
    """A VM of the KCSAN kernel, stopped at the end unless it was up before."""
    kernel = build.current(build.plan(None, "kcsan", [], os.cpu_count() or 1, say))
    if kernel is None:
        pytest.skip(NOT_BUILT)
    yield from kernel_vm(kernel, f"{session_vm()}-kdk-kcsan")


def test_a_data_race_names_the_function_its_module_and_both_accesses(kcsan_vm: Kdk) -> None:
    pid = kcsan_vm.backend.require().pid
    kcsan_vm.load("sync", ["nthreads=1", "iterations=1"])
    try:
        with expect_report("KCSAN") as found:
            kcsan_vm.exec("echo 1 > /sys/kernel/debug/kdk_sync/race")
        (e,) = found
        assert str(e) == "the guest kernel reported KCSAN: data-race in sync_race_inc [sync]"
        accesses = [ln for ln in e.details.splitlines() if ln.startswith("  access: ")]
        assert len(accesses) == 2, e.details
        assert all(" at sync_race_inc [sync]" in a for a in accesses), accesses
        assert any("sync_race_fn [sync]" in a for a in accesses), accesses  # the thread's side
        said = [r.text for r in kcsan_vm.dmesg() if r.text.startswith("sync: race: ")]
        assert said and said[-1].endswith(" of 200000 increments"), said  # the write ended
    finally:
        kcsan_vm.unload("sync")
    assert kcsan_vm.backend.require().pid == pid  # a report, not a crash: no new VM
