"""Emulated devices a QEMU VM is booted with (`kdk up --device`, `--can`).

A VM's devices are QEMU `-device` specs ("edu", "kvaser_pci,canbus=kdkcan0"),
kept in its record. Shortcuts expand to specs (`--can N`: N kvaser_pci
controllers on one CAN bus). What else QEMU needs for them (the can-bus
objects their `canbus=` names) and the kernel modules the guest loads at
boot for them (it has no udev to do that: they go into its initramfs)
follow from the specs alone.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from ..errors import KdkError

CAN_BUS = "kdkcan0"  # the bus `--can N` puts its controllers on
CAN_CONTROLLER = "kvaser_pci"  # an SJA1000 on PCI; Debian's kernel has its driver
# What the guest loads for a device model: its driver, and what user space
# needs to use it. Models not named here have no driver in the kernel (edu)
# or one the user loads.
GUEST_MODULES = {"kvaser_pci": ("kvaser_pci", "can_raw")}
_SPEC = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(,[^\s,]+)*")


def can_bus(controllers: int) -> tuple[str, ...]:
    """The device specs of `--can N`: N controllers on one bus."""
    if controllers < 0:
        raise KdkError(f"--can {controllers}: the number of CAN controllers cannot be negative")
    return tuple(f"{CAN_CONTROLLER},canbus={CAN_BUS}" for _ in range(controllers))


def request(specs: Sequence[str] = (), can: int = 0) -> tuple[str, ...]:
    """The devices of `--device SPEC...` and `--can N`, each spec checked."""
    for spec in specs:
        if not _SPEC.fullmatch(spec):
            raise KdkError(f"--device {spec!r}: not a QEMU device spec (MODEL[,OPTION=VALUE...])")
    return (*specs, *can_bus(can))


def model(spec: str) -> str:
    """The device model a spec names ("kvaser_pci" of "kvaser_pci,canbus=b")."""
    return spec.split(",", 1)[0]


def qemu_args(devices: Iterable[str]) -> list[str]:
    """QEMU's arguments for `devices`: one can-bus object per bus they name,
    then one -device each."""
    devices = list(devices)
    buses = dict.fromkeys(
        opt.split("=", 1)[1]
        for spec in devices
        for opt in spec.split(",")[1:]
        if opt.startswith("canbus=")
    )
    argv = [arg for bus in buses for arg in ("-object", f"can-bus,id={bus}")]
    return argv + [arg for spec in devices for arg in ("-device", spec)]


def guest_modules(devices: Iterable[str]) -> list[str]:
    """The modules the guest loads at boot for `devices`, in order, once each."""
    return list(dict.fromkeys(m for spec in devices for m in GUEST_MODULES.get(model(spec), ())))


def missing(wanted: Iterable[str], have: Iterable[str]) -> list[str]:
    """The devices of `wanted` that `have` lacks (each counted: two
    controllers asked for, one there: one missing)."""
    return list((Counter(wanted) - Counter(have)).elements())


def describe(devices: Sequence[str]) -> str:
    """'edu, 2 x kvaser_pci,canbus=kdkcan0' ('none' for no devices)."""
    counts = Counter(devices)
    return ", ".join(s if n == 1 else f"{n} x {s}" for s, n in counts.items()) or "none"


def require(wanted: Sequence[str], have: Sequence[str]) -> None:
    """KdkError, in one line, when the running VM lacks some of `wanted`."""
    lacking = missing(wanted, have)
    if lacking:
        raise KdkError(
            f"the running VM has no {describe(lacking)} (its devices: "
            f"{describe(have)}): `kdk down` first, then `kdk up` with all "
            "the devices wanted"
        )
