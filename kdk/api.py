"""`Kdk`, the facade the CLI, the pytest plugin and scripts share: it wires
the backend (kdk.vm), the session (kdk.session), the loader
(kdk.modules.loader) and the tools (kdk.trace, kdk.net, kdk.debug). What
only one part does is asked of that part: `k.loader.inspect(...)`,
`k.loader.fault_inject(...)`, `k.guest_session.guest()`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .guest.mux import login_argv
from .guest.ssh import Guest, Result
from .klog import kmsg
from .modules.build import Built
from .modules.loader import Loader, LoadResult
from .project import ModuleSource, known_modules, project_root, state_root, vm_name
from .session import Session
from .state import VMRecord
from .vm.backend import Backend, BootRequest, describe
from .vm.choose import BACKENDS, forget, open_backend

# The tools a command may not need are imported where they are used: a
# `kdk load` is a new Python process each time, and their imports cost it
# ~35 ms of its ~0.45 s.
if TYPE_CHECKING:
    import fabric

    from .guest.device import GuestFile
    from .modules import kunit
    from .net.wire import Wire
    from .trace import functions
    from .trace.bpf import Probes, Program

__all__ = ["BACKENDS", "BootRequest", "Kdk", "LoadResult"]


Say = Callable[[str], None]  # where a line of progress goes
AS_BEFORE = BootRequest()  # the default kernel and accel, a free port


def _quiet(_: str) -> None:
    """A `say`/`step` callback that shows nothing."""


class Kdk:
    """A project, its state folder and its VM."""

    def __init__(
        self,
        project: Path | None = None,
        state: Path | None = None,
        vm: str | None = None,
        say: Say = _quiet,
        backend: str | None = None,  # "qemu", "vagrant"; None: the one the VM remembers
    ) -> None:
        self.project = project or project_root()
        self.state = state or state_root(self.project)
        self.backend: Backend = open_backend(self.project, self.state, vm or vm_name(), backend)
        self.guest_session = Session(self.backend, say)  # the guest, watched
        self.loader = Loader(self.project, self.state, self.guest_session)

    def up(
        self, req: BootRequest = AS_BEFORE, say: Say = _quiet, step: Say = _quiet
    ) -> tuple[VMRecord, bool]:
        """Boot the VM unless it runs; (record, whether it was booted now)."""
        return self.backend.up(req, say, step)

    def up_command(self, req: BootRequest = AS_BEFORE, say: Say = _quiet) -> list[str]:
        """The command `up` would start (`kdk up --dry-run`), booting nothing."""
        return self.backend.dry_run(req, say)

    def down(self, destroy: bool = False) -> bool:
        """Stop the VM (False: it was not running); `destroy`: remove all of it."""
        self.guest_session.disconnect()
        if not destroy:
            return self.backend.down()
        stopped = self.backend.destroy()
        forget(self.backend)
        return stopped

    def status(self) -> dict[str, Any]:
        """What `kdk status --json` prints."""
        return describe(self.backend)

    def guest(self) -> Guest:
        """An SSH connection (not yet open) to the running guest."""
        return self.backend.guest()

    def exec(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
        stdin: IO[bytes] | None = None,
    ) -> Result:
        """Run a command in the guest, its output captured and copied to the streams."""
        with self.guest_session.guest() as g:
            return g.run(command, timeout=timeout, stdout=stdout, stderr=stderr, stdin=stdin)

    def run_here(self, command: Sequence[str], *, timeout: float | None = None) -> int:
        """Run a command in the guest on this process's terminal (`kdk exec`)."""
        return self.guest_session.run_here(command, timeout=timeout)

    def ssh_argv(self, command: Sequence[str], ssh: str) -> list[str]:
        """`kdk ssh`'s command line: `command` in the guest, else a shell."""
        ep = self.backend.endpoint(self.backend.require())
        return login_argv(ssh, ep, self.backend.state.path, command)

    def connection(self) -> fabric.Connection:
        """An open fabric Connection to the running guest, host key pinned."""
        from .guest.connection import connection

        return connection(self.backend.endpoint(self.backend.require()))

    @contextmanager
    def open_device(self, path: str, flags: int = os.O_RDWR) -> Iterator[GuestFile]:
        """A file opened in the guest (kdk.guest.device), closed at the end."""
        from .guest.device import GuestFile

        session = self.guest_session
        rec = session.backend.require()
        with (
            session.watched(rec),
            GuestFile(session.starter(rec), path, flags) as f,
        ):
            yield f

    def dmesg(self) -> list[kmsg.Record]:
        """The guest's whole kernel log."""
        with self.guest_session.guest() as g:
            return kmsg.parse(g.check(kmsg.DUMP).stdout.decode(errors="replace"))

    def modules(self) -> list[ModuleSource]:
        return known_modules(self.project)

    def build(self, spec: str, *, kernel: str | None = None, force: bool = False) -> Built:
        return self.loader.build(spec, kernel=kernel, force=force)

    def load(self, spec: str, params: Sequence[str] = ()) -> LoadResult:
        return self.loader.load(spec, params)

    def unload(self, spec: str, leaks: bool = False) -> LoadResult:
        return self.loader.unload(spec, leaks)

    def kunit(self, spec: str) -> kunit.Run:
        """Load a KUnit test module, which runs its suites; their results
        (kdk.modules.kunit). It is unloaded again."""
        from .modules import kunit

        return kunit.run(self.loader, spec)

    def trace(self, module: str) -> AbstractContextManager[functions.Trace]:
        """`kdk trace`: every function of a loaded module (see kdk.trace)."""
        from .trace import functions

        return functions.trace(self.guest_session, module, self.project)

    def bpf(
        self, program: Path | str, probes: Probes, cflags: Sequence[str] = ()
    ) -> AbstractContextManager[Program]:
        """A BPF program (a .c file or its text) attached in the guest (kdk.trace.bpf)."""
        from .trace.bpf import attached

        return attached(self.guest_session, program, probes, cflags)

    def wire(self, pcap: Path | None = None) -> Wire:
        """The host end of the packet wire, a scapy socket (kdk.net.wire)."""
        from .net.wire import Wire

        self.backend.require()
        return Wire(self.backend.state.path, pcap)

    def gdb_command(self, spec: str | None = None, args: Sequence[str] = ()) -> list[str]:
        """gdb's command line on the guest, with module `spec`'s symbols."""
        from .debug import gdb

        kernel = self.backend.require().kernel
        ko = None if spec is None else self.loader.module_file(spec, kernel)
        return gdb.command(self.guest_session, ko, self.state / "cache", args)

    def gdb(self, spec: str | None = None, args: Sequence[str] = ()) -> int:
        """Run gdb on the guest on this terminal (`kdk gdb`); its exit code."""
        from .debug import gdb

        return gdb.run(self.gdb_command(spec, args), self.backend.state.path)
