"""The interface every VM backend implements (QEMU now, Vagrant later).

A backend boots a guest that runs sshd and shares the project folder at
its host path, tells whether that guest runs, hands out SSH connections to
it, and stops it. Everything else in kdk (builds, loads, traces) goes
through `Guest`, so it works with any backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..guest.ssh import Endpoint, Guest
from ..kernel import Kernel
from .state import StateDir, VMRecord


class Backend(Protocol):
    name: str
    state: StateDir  # the VM's state folder (record, keys, console log)

    def up(
        self,
        kernel: Kernel,
        accel: str,
        say: Callable[[str], None],
        step: Callable[[str], None],
        ssh_port: int | None = None,
        debug: bool = False,
        replace: VMRecord | None = None,
    ) -> tuple[VMRecord, bool]:
        """Boot unless running (stopping it first if it is `replace`);
        (record, whether it was booted now)."""
        ...

    def dry_run(
        self,
        kernel: Kernel,
        accel: str,
        say: Callable[[str], None],
        step: Callable[[str], None],
        ssh_port: int | None = None,
        debug: bool = False,
    ) -> list[str]:
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
