"""The interface every VM backend implements (kdk.vm.qemu, kdk.vm.vagrant).

A backend boots a guest that runs sshd and shares the project folder at
its host path, tells whether that guest runs, hands out SSH connections to
it, says where modules for its kernel are built, and stops it. Everything
else in kdk (builds, loads, traces) goes through this interface and
`Guest`, so it works with any backend; what differs by backend is a method
here, never a test of the backend's class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import VMNotRunning
from ..guest.ssh import Endpoint, Guest
from ..kernel import Kernel
from ..make import Make
from ..state import StateDir, VMRecord, uptime


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
    cpus: int | None = None  # the guest's CPUs; None: the backend's default
    memory_mb: int | None = None  # the guest's memory; None: the backend's default


class Backend(Protocol):
    """Each backend derives from this (for `require`) and implements the rest."""

    name: str
    boots_with: str  # the command that boots such a VM
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
        rec = self.record()
        if rec is None:
            raise VMNotRunning(f"the VM is not up: run `{self.boots_with}`")
        return rec

    def endpoint(self, rec: VMRecord) -> Endpoint:
        """Where the guest's sshd is and which keys reach it."""
        ...

    def guest(self) -> Guest:
        """A connection (not yet open) to the running guest."""
        ...

    def down(self) -> bool:
        """Stop the VM; False when it was not running."""
        ...

    def destroy(self) -> bool:
        """Stop the VM and remove everything kdk made for it (`kdk down
        --destroy`); False when it was not running."""
        ...

    def details(self) -> dict[str, Any]:
        """What `kdk status --json` adds for this backend (its wire, its libvirt)."""
        ...

    def build_target(self, rec: VMRecord, guest: Callable[[], Guest]) -> tuple[Kernel, Make | None]:
        """The guest's kernel, and where modules for it are built: None for
        the host, else a `make` that runs elsewhere (`guest()` is the
        session's connection to the running guest)."""
        ...

    def symbols_dir(self, kernel: Kernel, guest: Callable[[], Guest]) -> Path:
        """A folder with the Module.symvers of `kernel` (what it exports)."""
        ...


def describe(backend: Backend) -> dict[str, Any]:
    """What `kdk status --json` prints of a backend's VM."""
    rec = backend.record()
    info: dict[str, Any] = {
        "running": rec is not None,
        "backend": backend.name,
        "state_dir": str(backend.state.path),
        "console_log": str(backend.state.console_log),
        **backend.details(),
    }
    if rec is not None:
        info.update(
            accel=rec.accel,
            kernel=rec.kernel,
            ssh_host=backend.endpoint(rec).host,
            ssh_port=rec.ssh_port,
            pid=rec.pid,
            uptime=round(uptime(rec), 1),
            ready_seconds=round(rec.ready_seconds, 2),
            debug=rec.debug,
            devices=list(rec.devices),
            cpus=rec.cpus,
            memory_mb=rec.memory_mb,
        )
    return info
