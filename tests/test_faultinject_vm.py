"""The fault-injection sweep on the debug kernel (the VM of
tests/test_kbuild_vm): a module whose init frees twice when its second
allocation fails and leaks its second when its third fails fails the
sweep, and the table names those steps, their sites and why (KASAN's
double-free, kmemleak's leak of 128 bytes); `--fail-nth` runs one step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from kdk.api import BootRequest, Kdk
from kdk.kernel import Kernel
from kdk.modules.faultinject import table

from . import usermods
from .test_kbuild_vm import DEBUG_VM, debug_kernel  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.kbuild, pytest.mark.vm, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def fvm(debug_kernel: Kernel) -> Iterator[Kdk]:  # noqa: F811 (the fixture imported)
    k = Kdk(vm=DEBUG_VM, say=lambda _: None)
    was_up = k.backend.record() is not None
    k.up(BootRequest(debug_kernel.release))
    yield k
    if not was_up:
        k.down()


def test_a_broken_unwind_fails_the_sweep_with_its_steps_named(fvm: Kdk, tmp_path: Path) -> None:
    folder = usermods.badunwind(tmp_path)
    sweep = fvm.fault_sweep(str(folder))
    fvm.fault_leaks([sweep])
    print(table(sweep))
    assert sweep.failed
    double, *leaks = [s for s in sweep.steps if s.problems]
    assert double.problems == ["KASAN: double-free in kfree"]
    assert double.site.startswith("badunwind_init+") and double.errno == 12
    # The third kmalloc fails (at the slab, or at the page under it): b leaks.
    assert leaks and all(s.n > double.n and s.site.startswith("badunwind_init+") for s in leaks)
    for s in leaks:
        (leak,) = s.problems
        assert leak.startswith("leak: 128 bytes allocated at ")
        assert "do_one_initcall" in leak
    # the last step loads it, and it unloads: not loaded now
    assert sweep.steps[-1].errno == 0
    assert not fvm.exec("test -d /sys/module/badunwind").ok

    # kdk load --fail-nth: that one step again, alone
    (again,) = fvm.fail_nth(str(folder), double.n).steps
    assert (again.n, again.site, again.errno) == (double.n, double.site, 12)
    assert again.problems == ["KASAN: double-free in kfree"]
