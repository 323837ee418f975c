"""The session's crash watch and recovery, without a VM.

A stand-in backend drives the real kdk.session code: its "QEMU" is a real
process whose command line names the state folder (so liveness is read
from /proc as for a real VM), its console is a real file the test writes
kernel reports into (copied from real guests, tests/data/), and its guest
runs what the test scripts: print, raise what a dropped connection or a
silent guest raises, or end the VM. `replace` boots a new stand-in the way
a backend does (the old console kept as the previous one).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from kdk.errors import GuestHeld, GuestHung, GuestTimeout, KernelCrash, KernelReport, VMLost
from kdk.guest.ssh import Endpoint, Guest, Result
from kdk.kernel import Kernel
from kdk.make import Make
from kdk.session import Session
from kdk.state import GDB_MARKER, StateDir, VMRecord
from kdk.vm.backend import Backend

DATA = Path(__file__).parent / "data"
# A real console's reports (lines 7-47: a WARNING the kernel goes on
# after; 48-99: a NULL dereference, an Oops; 100-113: the panic oops=panic
# made of it).
LINES = (DATA / "console-warn-null-oops-panic.log").read_text().splitlines(keepends=True)
WARNING, OOPS, PANIC = "".join(LINES[6:47]), "".join(LINES[47:99]), "".join(LINES[47:])

Script = Callable[["StandInGuest"], Result]


class StandInGuest(Guest):
    """A connection that runs the test's script instead of a command."""

    def __init__(self, backend: StandInBackend, rec: VMRecord) -> None:
        super().__init__(backend.endpoint(rec), lambda: backend.state.alive(rec))
        self.backend = backend
        self.open = False
        self.answers = True  # whether a keepalive is answered

    @property
    def connected(self) -> bool:
        return self.open

    def connect(self, timeout: float = 0) -> None:
        self.open = True
        self.backend.connects += 1

    def probe(self) -> None:
        if not self.answers:
            raise GuestHung("no answer to a keepalive request")

    def run(self, command: str | Sequence[str], *args: Any, **kwargs: Any) -> Result:
        return self.backend.script(self)

    def close(self) -> None:
        self.open = False


def ok(_: StandInGuest) -> Result:
    return Result(0, b"done\n", b"")


def run(session: Session, command: str, timeout: float = 60) -> Result:
    """`command` in the guest, watched, as every kdk command runs."""
    with session.guest() as g:
        return g.run(command, timeout=timeout)


class StandInBackend(Backend):
    """The Backend interface over a stand-in QEMU (what a Session uses of it)."""

    name = "stand-in"
    boots_with = "kdk up"

    def __init__(self, folder: Path) -> None:
        self.state = StateDir(folder)
        folder.mkdir(parents=True)
        self.script: Script = ok
        self.replaced = 0
        self.connects = 0
        self.guests: list[StandInGuest] = []
        self.boot()

    def boot(self) -> VMRecord:
        """A new stand-in QEMU and its record, as a backend's boot leaves them."""
        code = "import time; time.sleep(300)"
        proc = subprocess.Popen([sys.executable, "-c", code, str(self.state.path)])
        rec = VMRecord("stand-in", proc.pid, 2222, "6.1.0-test", "tcg", time.time(), 1.0)
        self.proc = proc
        deadline = time.monotonic() + 10
        while not self.state.alive(rec):  # its command line names the folder once exec'd
            assert time.monotonic() < deadline, "the stand-in QEMU did not start"
            time.sleep(0.01)
        self.state.write(rec)
        self.state.console_log.write_text("kdk-ready 1.0\n")
        return rec

    def console(self, text: str) -> None:
        """The guest kernel prints `text` on the serial console."""
        with self.state.console_log.open("a") as f:
            f.write(text)

    def end(self) -> None:
        """The VM ends (a panic with -no-reboot, or a kill from outside)."""
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.end()

    # -- the interface ----------------------------------------------------
    def record(self) -> VMRecord | None:
        return self.state.running()

    def endpoint(self, rec: VMRecord) -> Endpoint:
        return Endpoint("127.0.0.1", rec.ssh_port, "root", Path("key"), Path("key.pub"))

    def guest(self) -> Guest:
        g = StandInGuest(self, self.require())
        self.guests.append(g)
        return g

    def replace(self, rec: VMRecord, say: Callable[[str], None]) -> VMRecord:
        self.replaced += 1
        self.stop()
        self.state.console_log.replace(self.state.previous_console_log)
        return self.boot()

    def up(self, req: Any, say: Callable[[str], None], step: Callable[[str], None]) -> Any:
        raise NotImplementedError  # a Session never boots a VM of its own

    def dry_run(self, req: Any, say: Callable[[str], None]) -> list[str]:
        raise NotImplementedError

    def down(self) -> bool:
        raise NotImplementedError

    def destroy(self) -> bool:
        raise NotImplementedError

    def details(self) -> dict[str, str]:
        return {}

    def build_target(self, rec: VMRecord, guest: Callable[[], Guest]) -> tuple[Kernel, Make | None]:
        raise NotImplementedError

    def symbols_dir(self, kernel: Kernel, guest: Callable[[], Guest]) -> Path:
        raise NotImplementedError


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[tuple[StandInBackend, Session, list[str]]]:
    backend = StandInBackend(tmp_path / "vm")
    said: list[str] = []
    yield backend, Session(backend, said.append), said
    backend.stop()


def test_a_command_on_a_quiet_console_returns_its_result(
    vm: tuple[StandInBackend, Session, list[str]],
) -> None:
    backend, session, said = vm
    assert run(session, "true").stdout == b"done\n"
    assert run(session, "true").ok
    assert backend.connects == 1  # one connection shared by the commands
    assert backend.replaced == 0 and said == []


def test_a_warning_is_reported_and_the_vm_kept(
    vm: tuple[StandInBackend, Session, list[str]],
) -> None:
    backend, session, said = vm
    pid = backend.require().pid

    def warn(g: StandInGuest) -> Result:
        backend.console(WARNING)
        return Result(0, b"", b"")

    backend.script = warn
    with pytest.raises(KernelCrash) as e:
        run(session, "echo warn > /sys/kernel/debug/faulty/trigger")
    assert str(e.value).startswith("the guest kernel warned")
    assert "faulty_warn" in str(e.value) and "booted again" not in str(e.value)
    assert backend.replaced == 0 and backend.require().pid == pid and said == []


def test_a_report_of_the_kernels_checks_is_no_crash_and_the_vm_is_kept(
    vm: tuple[StandInBackend, Session, list[str]],
) -> None:
    """A sleep in atomic context is a "BUG:" that oops.parse alone would
    call fatal; it is a report of DEBUG_ATOMIC_SLEEP: KernelReport, no reboot."""
    backend, session, said = vm
    pid = backend.require().pid

    def sleep_in_atomic(g: StandInGuest) -> Result:
        backend.console((DATA / "console-atomic-kdk-debug.log").read_text())
        return Result(0, b"", b"")

    backend.script = sleep_in_atomic
    with pytest.raises(KernelReport) as e:
        run(session, "echo 1 > /sys/kernel/debug/kdk_sync/sleep_in_atomic")
    assert str(e.value) == (
        "the guest kernel reported sleep in atomic: sleeping function called from invalid"
        " context in sync_sleep_in_atomic [sync]"
    )
    assert e.value.exit_code == 6 and e.value.checks == ["sleep in atomic"]
    assert e.value.details.splitlines()[-1] == f"  console log: {backend.state.console_log}"
    assert backend.replaced == 0 and backend.require().pid == pid and said == []


def test_an_oops_the_kernel_survived_gets_a_fresh_vm(
    vm: tuple[StandInBackend, Session, list[str]],
) -> None:
    backend, session, _ = vm
    old = backend.require()

    def oops(g: StandInGuest) -> Result:
        backend.console(OOPS)
        return Result(137, b"", b"Killed\n")

    backend.script = oops
    with pytest.raises(KernelCrash, match="the VM was booted again") as e:
        run(session, "echo null > /sys/kernel/debug/faulty/trigger")
    assert "NULL pointer dereference" in str(e.value)
    assert backend.replaced == 1 and backend.require().pid != old.pid
    assert str(backend.state.previous_console_log) in e.value.details  # where the report is
    backend.script = ok
    assert run(session, "true").ok  # on a new connection to the new VM
    assert backend.connects == 2


def test_a_panic_that_ended_the_vm_is_reported_and_the_vm_replaced(
    vm: tuple[StandInBackend, Session, list[str]],
) -> None:
    backend, session, said = vm

    def panic(g: StandInGuest) -> Result:
        backend.console(PANIC)
        backend.end()
        raise g.lost("running the command")

    backend.script = panic
    with pytest.raises(KernelCrash, match=r"crashed: BUG: kernel NULL.*booted again") as e:
        run(session, "echo panic > /sys/kernel/debug/faulty/trigger")
    assert "Kernel panic - not syncing: Fatal exception" in e.value.details
    assert backend.replaced == 1 and backend.record() is not None
    assert said == ["booting a fresh VM"]


def hang(g: StandInGuest) -> Result:
    g.answers = False
    raise GuestHung("no answer for 10 s running the command")


def killed(g: StandInGuest) -> Result:
    g.backend.end()
    raise g.lost("running the command")


def slow(g: StandInGuest) -> Result:
    raise GuestTimeout("'sleep 100' did not finish in 1 s")


def held(g: StandInGuest) -> Result:
    (g.backend.state.path / GDB_MARKER).write_text(f"{g.backend.proc.pid}\n")  # a live pid
    g.answers = False
    raise GuestTimeout("'true' did not finish in 5 s")


# A guest that does not answer as it should: what the session raises, and
# whether it booted a fresh VM (and what it said) or left the VM as it was.
SILENCES = [
    (
        hang,
        VMLost,
        r"hung with no crash report.*booted again",
        ["no answer for 10 s running the command; booting a fresh VM"],
    ),
    (killed, VMLost, r"no longer running, with no crash report.*run `kdk up`", []),
    (slow, GuestTimeout, r"did not finish in 1 s", []),
    (held, GuestHeld, r"may be stopped in gdb \(kdk gdb, pid \d+\)", []),
]


@pytest.mark.parametrize(("script", "error", "match", "says"), SILENCES)
def test_a_guest_that_does_not_answer(
    vm: tuple[StandInBackend, Session, list[str]],
    script: Script,
    error: type[Exception],
    match: str,
    says: list[str],
) -> None:
    backend, session, said = vm
    pid, backend.script = backend.require().pid, script
    with pytest.raises(error, match=match) as e:
        run(session, "sleep 100", 1)
    assert not isinstance(e.value, KernelCrash)  # no report on the console: no crash
    assert said == says and backend.replaced == len(says)
    rec = backend.record()
    if script is killed:
        assert rec is None  # left stopped: `kdk up` is the user's call
    else:
        assert rec is not None and (rec.pid != pid) == bool(says)


def test_a_load_script_captured_on_the_shared_connection_is_watched_too(
    vm: tuple[StandInBackend, Session, list[str]],
) -> None:
    backend, session, _ = vm
    rec = backend.require()
    session.connected(rec)  # a Kdk that has run a command already

    def warn(g: StandInGuest) -> Result:
        backend.console(WARNING)
        return Result(0, b"kdk-taint 0 512\n", b"")

    backend.script = warn
    with pytest.raises(KernelCrash, match="warned"), session.watched(rec):
        assert session.capture(rec, "insmod faulty.ko", 60).stdout == b"kdk-taint 0 512\n"
    assert backend.connects == 1
