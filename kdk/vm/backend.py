"""The interface every VM backend implements (QEMU now, Vagrant later).

A backend boots a guest that runs sshd and shares the project folder at
its host path, tells whether that guest runs, hands out SSH connections to
it, and stops it. Everything else in kdk (builds, loads, traces) goes
through `Guest`, so it works with any backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..guest.ssh import Endpoint, Guest
from .state import StateDir, VMRecord


@dataclass(frozen=True)
class BootRequest:
    """What `kdk up` asks for. A backend honours each field it can and
    refuses, in one line, one it cannot (the Vagrant guest boots its box's
    kernel and has its own address)."""

    kernel: str | None = None  # a host kernel's release or its prefix; None: the default
    accel: str = "auto"  # "kvm", "tcg", or "auto" (KVM where it works)
    ssh_port: int | None = None  # a host port for the guest's sshd, where one is forwarded
    debug: bool = False  # the allocator's own checks on (kdk up --debug)
    libvirt: str | None = None  # Vagrant: `kdk`, or the user's URI[,netns=NS]; None: remembered
    devices: tuple[str, ...] = ()  # QEMU -device specs to add (kdk.vm.devices)


class Backend(Protocol):
    name: str
    state: StateDir  # the VM's state folder (record, keys, console log)

    def up(
        self, req: BootRequest, say: Callable[[str], None], step: Callable[[str], None]
    ) -> tuple[VMRecord, bool]:
        """Boot unless running; (record, whether it was booted now)."""
        ...

    def replace(self, rec: VMRecord, say: Callable[[str], None]) -> VMRecord:
        """A fresh boot in place of the (crashed or hung) VM of `rec`, booted
        as it was; the running VM when another kdk replaced it already."""
        ...

    def dry_run(self, req: BootRequest, say: Callable[[str], None]) -> list[str]:
        """The command `up` would run, booting nothing."""
        ...

    def record(self) -> VMRecord | None:
        """The running VM's record, None when it is not running."""
        ...

    def require(self) -> VMRecord:
        """The running VM's record; VMNotRunning otherwise."""
        ...

    def endpoint(self, rec: VMRecord) -> Endpoint:
        """Where the guest's sshd is and which keys reach it."""
        ...

    def guest(self) -> Guest:
        """A connection (not yet open) to the running guest."""
        ...

    def down(self) -> bool:
        """Stop the VM; False when it was not running."""
        ...
