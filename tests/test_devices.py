"""Emulated devices of a VM (kdk.vm.devices): QEMU's arguments, the guest's
modules and the checks against a running VM, with no VM needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from kdk.errors import KdkError
from kdk.state import StateDir, VMRecord
from kdk.vm import devices

CAN = "kvaser_pci,canbus=kdkcan0"


def test_can_shortcut_is_one_bus_with_its_controllers() -> None:
    assert devices.request(["edu"], can=2) == ("edu", CAN, CAN)
    assert devices.qemu_args(devices.request(["edu"], can=2)) == [
        "-object",
        "can-bus,id=kdkcan0",
        "-device",
        "edu",
        "-device",
        CAN,
        "-device",
        CAN,
    ]
    assert devices.qemu_args(["edu"]) == ["-device", "edu"]


def test_each_bus_a_spec_names_is_made_once() -> None:
    specs = ["kvaser_pci,canbus=a", "kvaser_pci,canbus=b", "kvaser_pci,canbus=a"]
    argv = devices.qemu_args(specs)
    assert argv[:4] == ["-object", "can-bus,id=a", "-object", "can-bus,id=b"]


def test_the_guest_gets_drivers_only_for_devices_that_have_them() -> None:
    assert devices.guest_modules(["edu"]) == []
    assert devices.guest_modules(["edu", *devices.can_bus(2)]) == ["kvaser_pci", "can_raw"]


@pytest.mark.parametrize("bad", ["", "edu x", "-device", ",edu"])
def test_what_is_no_device_spec_is_refused_in_one_line(bad: str) -> None:
    with pytest.raises(KdkError, match="not a QEMU device spec"):
        devices.request([bad])
    with pytest.raises(KdkError, match="cannot be negative"):
        devices.request(can=-1)


def test_a_running_vm_lacking_a_device_is_an_error_that_names_it() -> None:
    have = ("edu", CAN, CAN)
    devices.require(("edu", CAN), have)
    assert devices.missing(devices.can_bus(3), have) == [CAN]
    with pytest.raises(KdkError) as e:
        devices.require(("pci-testdev", "edu"), have)
    assert str(e.value).startswith(
        f"the running VM has no pci-testdev (its devices: edu, 2 x {CAN}): `kdk down` first"
    )


def test_the_record_keeps_the_devices(tmp_path: Path) -> None:
    state = StateDir(tmp_path)
    rec = VMRecord("qemu", 1, 2, "k", "tcg", 0.0, 1.0, devices=("edu", CAN))
    state.write(rec)
    assert state.read() == rec
