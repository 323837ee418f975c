"""faulty: a module that crashes on demand, and a VM that survives it."""

from __future__ import annotations

import pytest

from kdk.api import Kdk
from kdk.errors import KernelCrash
from kdk.testing import sh

TRIGGER = "/sys/kernel/debug/kdk_faulty/trigger"
LOCKUP_THRESH = 2  # s; the soft lockup test's watchdog_thresh


def test_loads_and_unloads_twice(vm: Kdk) -> None:
    for _ in range(2):
        assert vm.load("faulty").log[-1].text.startswith("faulty: write null, warn, bug, lockup")
        assert vm.unload("faulty").log[-1].text == "faulty: unloaded"


def test_a_warning_is_reported_and_the_vm_goes_on(vm: Kdk) -> None:
    vm.load("faulty")
    pid = vm.backend.require().pid
    with pytest.raises(KernelCrash) as err:
        vm.exec(f"echo warn > {TRIGGER}")
    assert str(err.value).startswith("the guest kernel warned: WARNING at ")
    assert "in faulty_warn [faulty]" in str(err.value)
    assert "console log: " in err.value.details
    assert vm.backend.require().pid == pid  # not rebooted for a warning
    assert vm.unload("faulty").log[-1].text == "faulty: unloaded"


@pytest.mark.parametrize(
    ("how", "kind", "function"),
    [
        ("null", "BUG: kernel NULL pointer dereference", "faulty_crash"),
        ("bug", "kernel BUG at", "faulty_bug"),
        ("lockup", "soft lockup", "faulty_lockup"),
    ],
)
def test_an_oops_is_reported_and_a_fresh_vm_is_ready(
    vm: Kdk, how: str, kind: str, function: str
) -> None:
    vm.load("faulty")
    pid = vm.backend.require().pid
    if how == "lockup":  # declared after 2 x watchdog_thresh s: 4, not kdk's 10 (the VM goes)
        sh(vm, f"echo {LOCKUP_THRESH} > /proc/sys/kernel/watchdog_thresh")
    with pytest.raises(KernelCrash) as err:
        vm.exec(f"echo {how} > {TRIGGER}")
    message, block = str(err.value), err.value.details
    assert message.startswith(f"the guest kernel crashed: {kind}")
    assert f"in {function} [faulty]" in message and message.endswith("the VM was booted again")
    assert "call trace: trigger_write" in block and "previous-console.log" in block
    assert vm.backend.require().pid != pid
    assert vm.exec("cat /proc/sys/kernel/tainted").stdout == b"0\n"  # a clean kernel again
    assert vm.load("faulty").log  # and the module can be loaded again
    vm.unload("faulty")
