"""The guest of one VM as kdk's commands see it.

One `Session` per `Kdk`: the SSH connection all its commands share, and
the watch around every command — the console read for crash reports, the
guest asked for a sign of life when a command gets no answer, and a fresh
VM booted (the backend's `replace`) after a crash or a hang, so the next
command works. It needs only the `Backend` interface, so a stand-in
backend drives all of it in tests without a VM.
"""

from __future__ import annotations

import io
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from .errors import (
    GuestHeld,
    GuestHung,
    GuestTimeout,
    KdkError,
    KernelCrash,
    KernelReport,
    VMLost,
)
from .guest import mux
from .guest.ssh import Guest, JsonProcess, Result, Starter, command_line
from .klog import oops, reports
from .state import VMRecord, gdb_holder
from .vm.backend import Backend


class Session:
    """The connected guest of `backend`'s VM, watched while commands run."""

    def __init__(self, backend: Backend, say: Callable[[str], None]) -> None:
        self.backend = backend
        self.say = say  # where a reboot after a crash is told
        self._guest: Guest | None = None  # the one connection all commands share
        self._guest_pid = 0  # the VM it leads to (a reboot means a new connection)
        self._connecting = threading.Lock()

    def connected(self, rec: VMRecord) -> Guest:
        """The shared connection, opened when there is none yet, when it
        dropped, or when the VM was replaced."""
        with self._connecting:
            g = self._guest
            if g is None or self._guest_pid != rec.pid or not g.connected:
                self.disconnect()
                g = self.backend.guest()
                g.connect()
                self._guest, self._guest_pid = g, rec.pid
            return g

    def disconnect(self) -> None:
        if self._guest is not None:
            self._guest.close()
            self._guest = None

    @contextmanager
    def guest(self) -> Iterator[Guest]:
        """The connected guest, its console watched while the block runs.

        A crash report on the console (oops, BUG, WARNING, lockup, panic)
        raises KernelCrash with the report; a report of one of the kernel's
        checks (KASAN, lockdep, ...) without a crash raises KernelReport.
        When the guest died of a crash or hung, a fresh VM is booted first,
        with the same kernel, accel and port, so the next command works. A
        VM that just stopped (killed from outside) is reported as lost and
        left stopped.
        """
        rec = self.backend.require()
        with self.watched(rec):
            yield self.connected(rec)

    @contextmanager
    def watched(self, rec: VMRecord) -> Iterator[None]:
        """The console watch and recovery of `guest()` around a block that
        talks to the guest of `rec` (see there)."""
        console = self.backend.state.console_log
        offset = _size(console)
        try:
            yield
        except (VMLost, GuestTimeout) as e:
            # A panic ends QEMU within moments; one still running may be
            # fine (only a channel or the command failed) or hung. A guest
            # that did not answer a keepalive is hung (see kdk.guest.ssh).
            if isinstance(e, GuestHung):
                gone, hung = self._wait_gone(rec, 0.0), True
            else:
                gone = self._wait_gone(rec, 0.0 if isinstance(e, GuestTimeout) else 3.0)
                hung = not gone and not self._responsive(rec)
            if not gone:  # stopped in gdb is not hung
                check_not_held(self.backend.state.path, e)
            if not gone and not hung:
                self._raise_crashes(console, offset)
                raise
            crashes = oops.parse(_read_from(console, offset))
            if gone and not crashes:  # killed from outside, or QEMU itself died
                raise VMLost(
                    f"{e}, with no crash report on its console ({console}); run `kdk up`"
                ) from None
            self.reboot(rec, "" if crashes else str(e))
            kept = self.backend.state.previous_console_log
            if crashes:
                raise crash_error(crashes, kept, rebooted=True) from None
            raise VMLost(
                f"{e}; the guest hung with no crash report (see {kept}); the VM was booted again"
            ) from None
        self._raise_crashes(console, offset)

    def reboot(self, rec: VMRecord, why: str = "") -> VMRecord:
        """Replace the VM by a fresh boot with the same kernel, accel and
        port (unless another kdk did that already); `why` is said first."""
        self.say(f"{why}; booting a fresh VM" if why else "booting a fresh VM")
        self.disconnect()
        return self.backend.replace(rec, self.say)

    def capture(
        self, rec: VMRecord, command: str, timeout: float, stdin: bytes | None = None
    ) -> Result:
        """A script of kdk's own whose output is wanted whole (a load's), to
        run inside `watched`. The shared connection when there is one; else,
        in a new process, the VM's OpenSSH master (kdk.guest.mux), which
        saves a connect, under its SCRIPT_SHELL."""
        if self._guest is None:
            ep, state = self.backend.endpoint(rec), self.backend.state.path
            fed = stdin or b""
            res = mux.run(ep, state, command, timeout, feed=fed, capture=True, script=True)
            if res is not None:
                return res
        feed = None if stdin is None else io.BytesIO(stdin)
        return self.connected(rec).run(command, timeout=timeout, stdin=feed)

    def starter(self, rec: VMRecord) -> Starter:
        """How to start long-running guest programs spoken to in JSON lines
        (see Guest.start) in the guest of `rec`, inside `watched`: on the
        VM's OpenSSH master while this session has no connection (a new
        process: no login of its own), else on its connection."""

        def start(command: Sequence[str], what: str) -> JsonProcess:
            if self._guest is None:
                ep, state = self.backend.endpoint(rec), self.backend.state.path
                proc = mux.start(ep, state, command_line(command), what)
                if proc is not None:
                    return proc
            return self.connected(rec).start(command, what)

        return start

    def run_here(self, command: Sequence[str], *, timeout: float | None = None) -> int:
        """Run a command in the guest with this process's own stdin, stdout
        and stderr (`kdk exec`); its exit code. On the VM's OpenSSH master
        when there is one (a new process has no connection yet)."""
        rec = self.backend.require()
        tty_in = sys.stdin is None or sys.stdin.isatty()
        with self.watched(rec):
            ep, state = self.backend.endpoint(rec), self.backend.state.path
            res = mux.run(ep, state, command, timeout, tty_in)
        if res is not None:
            return res.exit_code
        stdin = None if tty_in else sys.stdin.buffer
        out, err = sys.stdout.buffer, sys.stderr.buffer
        with self.guest() as g:
            return g.run(command, timeout=timeout, stdout=out, stderr=err, stdin=stdin).exit_code

    def _responsive(self, rec: VMRecord) -> bool:
        """Whether the guest still answers (a keepalive on a connection that
        works, or a new one)."""
        try:
            self.connected(rec).probe()
        except KdkError:
            return False
        return True

    def _wait_gone(self, rec: VMRecord, wait: float) -> bool:
        """Whether the VM ended, waiting up to `wait` seconds for it."""
        deadline = time.monotonic() + wait
        while self.backend.state.alive(rec):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _raise_crashes(self, console: Path, offset: int) -> None:
        """KernelCrash for crash reports that appeared on a guest that still
        runs (a fatal one, an oops the kernel survived, gets a fresh VM),
        else KernelReport for the reports of the kernel's checks."""
        crashes, found = reports.split(_read_from(console, offset))
        if not crashes:
            if found:
                raise report_error(found, console)
            return
        fatal = any(c.fatal for c in crashes)
        if fatal:
            self.reboot(self.backend.require())
            console = self.backend.state.previous_console_log
        error = crash_error(crashes, console, rebooted=fatal)
        error.details = "\n".join([*(r.format() for r in found), error.details])
        raise error


def check_not_held(state: Path, error: KdkError) -> None:
    """Raise GuestHeld instead of `error` (the guest did not answer) when
    gdb is attached: it may hold the guest stopped, which is not a hang."""
    pid = gdb_holder(state)
    if pid is not None:
        raise GuestHeld(
            f"{error}: the guest may be stopped in gdb (kdk gdb, pid {pid}); "
            "continue or quit gdb there"
        ) from None


def crash_error(crashes: list[oops.Crash], console: Path, rebooted: bool) -> KernelCrash:
    """The one error for the crash reports of one command."""
    first = crashes[0]
    after = "; the VM was booted again" if rebooted else ""
    details = "\n".join(c.format(console) for c in crashes)
    return KernelCrash(f"the guest kernel {first.what}: {first.summary()}{after}", details)


def report_error(found: list[reports.Report], console: Path | None) -> KernelReport:
    """The one error for the reports of the kernel's checks during one
    command (from `console`, the console log, when they came from there)."""
    more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
    details = "\n".join(r.format(console) for r in found)
    checks = [r.check for r in found]
    return KernelReport(f"the guest kernel reported {found[0].summary()}{more}", details, checks)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    """The text of a file from byte `offset` on ("" if it is gone)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""
