"""faulty's memory bugs: reported with `kdk up --debug`, and what a stock boot does."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kdk.api import BootRequest, Kdk
from kdk.errors import KernelCrash
from kdk.kernel import Kernel
from kdk.testing import guest_cpus, session_vm
from kdk.ui import say

pytestmark = pytest.mark.vm  # boots a VM of its own (not through kdk_session)

TRIGGER = "/sys/kernel/debug/kdk_faulty/trigger"
BUGS = [
    ("uaf", "Poison overwritten", "faulty_uaf"),
    ("overflow", "Redzone overwritten", "faulty_overflow"),
    ("doublefree", "Object already free", "faulty_doublefree"),
]


@pytest.fixture(scope="module")
def debug_vm(kdk_kernel: Kernel) -> Iterator[Kdk]:
    """A VM of its own booted with --debug (the session's VM is left as it is)."""
    k = Kdk(vm=f"{session_vm()}-debug", say=say)
    was_up = k.backend.record() is not None
    # 512 MiB: page poisoning writes every free page at boot (2048 MiB took
    # 11-13 s to ready on one CPU under TCG, 512 MiB 4.3 s)
    req = BootRequest(kdk_kernel.release, debug=True, cpus=guest_cpus(), memory_mb=512)
    rec, _ = k.up(req)
    assert rec.debug, f"{k.backend.state.path} runs without --debug: stop it first"
    # These tests are about SLUB's checks. KFENCE (on with --debug where the
    # kernel has it: 6.12) samples an allocation every 100 ms and reports
    # the bug itself when it took faulty's (seen once in CI): no sampling here.
    kfence = "/sys/module/kfence/parameters/sample_interval"
    assert k.exec(f"[ ! -e {kfence} ] || echo 0 > {kfence}").ok
    k.load("faulty")
    yield k
    if not was_up:
        k.down()


@pytest.mark.parametrize(("how", "kind", "function"), BUGS)
def test_each_memory_bug_is_reported_when_it_happens(
    debug_vm: Kdk, how: str, kind: str, function: str
) -> None:
    pid = debug_vm.backend.require().pid
    with pytest.raises(KernelCrash) as err:
        debug_vm.exec(f"echo {how} > {TRIGGER}")
    message, block = str(err.value), err.value.details
    assert message.startswith("the guest kernel reported a memory error: ")
    assert kind in message and message.endswith(f" in {function} [faulty]")
    assert f"  allocated by: {function} [faulty]" in block.splitlines()
    assert "BUG kdk_faulty" in block  # the SLUB report itself
    assert debug_vm.backend.require().pid == pid  # SLUB repaired it: no reboot
    assert debug_vm.exec("true").ok  # and the next command finds no old report


def test_without_debug_a_use_after_free_and_an_overflow_go_unnoticed(vm: Kdk) -> None:
    vm.load("faulty")
    for how in ("uaf", "overflow"):
        assert vm.exec(f"echo {how} > {TRIGGER}").ok
    vm.unload("faulty")


def test_without_debug_a_double_free_in_a_row_is_a_kernel_bug(vm: Kdk) -> None:
    vm.load("faulty")
    with pytest.raises(KernelCrash) as err:
        vm.exec(f"echo doublefree > {TRIGGER}")
    message = str(err.value)
    assert message.startswith("the guest kernel crashed: kernel BUG at mm/slub.c:")
    assert message.endswith(" called from faulty_doublefree [faulty]; the VM was booted again")
