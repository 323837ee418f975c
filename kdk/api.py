"""The library the CLI is a thin layer over: one `Kdk` per project.

Everything `kdk` does on the command line is a method here, so tests and
users' own scripts do the same things the same way.
"""

from __future__ import annotations

import io
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .debug import gdb
from .errors import (
    GuestHung,
    GuestTimeout,
    KdkError,
    KernelCrash,
    LoadFailed,
    UnknownModule,
    VMLost,
)
from .guest import mux
from .guest.device import GuestFile
from .guest.ssh import Guest, Result
from .kernel import BOOT, MODULES, Kernel, module_name, select_kernel
from .modules import deps, kmsg, loading, oops, taint
from .modules.build import Built, Make, build, built_modules, main_module
from .modules.errnos import insmod_reason
from .modules.info import check_vermagic, modinfo
from .modules.inspect import Inspection, inspect
from .modules.scaffold import new_module
from .project import (
    ModuleSource,
    find_module,
    known_modules,
    project_root,
    state_root,
    vm_name,
)
from .trace.bpf import Probes, Program
from .vm.backend import Backend, BootRequest
from .vm.box import Box, build_box, write_pointer
from .vm.choose import forget, open_backend
from .vm.state import VMRecord, process_alive, uptime
from .vm.vagrant import VagrantBackend

if TYPE_CHECKING:
    import fabric

    from .net.wire import Wire

LOAD_TIMEOUT = 60.0  # an insmod whose init hangs is reported, not waited on forever


def _quiet(_: str) -> None:
    """A `say`/`step` callback that shows nothing."""


@dataclass(frozen=True)
class LoadResult:
    """What `kdk load`/`kdk unload` did in the guest."""

    name: str  # the module's name in the kernel
    ko: Path | None  # the file that was loaded (None for an unload)
    log: list[kmsg.Record]  # exactly the kernel log records the command produced
    built: bool  # whether sources were rebuilt first
    tainted: list[str] = field(default_factory=list)  # new taint flags beyond O and E
    build: Built | None = None  # how it was built (None: a prebuilt .ko, or an unload)
    needs: list[str] = field(default_factory=list)  # modules loaded first unless loaded


class Kdk:
    """A project, its state folder and its VM."""

    def __init__(
        self,
        project: Path | None = None,
        state: Path | None = None,
        vm: str | None = None,
        say: Callable[[str], None] = _quiet,
        backend: str | None = None,
    ) -> None:
        self.project = project or project_root()
        self.state = state or state_root(self.project)
        # `backend` ("qemu", "vagrant") is remembered by the VM; None: the remembered one
        self.backend: Backend = open_backend(self.project, self.state, vm or vm_name(), backend)
        self.say = say  # where kdk tells what it does on its own (a reboot after a crash)
        self._guest: Guest | None = None  # the one connection all commands share
        self._guest_pid = 0  # the QEMU it leads to (a reboot means a new connection)
        self._connecting = threading.Lock()

    # -- the VM ------------------------------------------------------------
    def up(
        self,
        kernel: str | None = None,
        accel: str = "auto",
        ssh_port: int | None = None,
        say: Callable[[str], None] = _quiet,
        step: Callable[[str], None] = _quiet,
        debug: bool = False,
        libvirt: str | None = None,
        devices: Sequence[str] = (),
    ) -> tuple[VMRecord, bool]:
        """Boot the VM unless it runs; (record, whether it was booted now).
        `debug`: with the allocator's checks on (see README, memory bugs).
        `libvirt` (Vagrant): "kdk" or the user's "URI[,netns=NS]", remembered
        by the VM (see kdk.vm.libvirt); None: the remembered one. `devices`:
        QEMU -device specs to add (kdk.vm.devices: `can_bus(2)` for a CAN
        bus), their drivers loaded; a running VM without them is an error."""
        req = BootRequest(kernel, accel, ssh_port, debug, libvirt, tuple(devices))
        return self.backend.up(req, say, step)

    def up_command(
        self,
        kernel: str | None = None,
        accel: str = "auto",
        ssh_port: int | None = None,
        debug: bool = False,
        say: Callable[[str], None] = _quiet,
        libvirt: str | None = None,
        devices: Sequence[str] = (),
    ) -> list[str]:
        """The command `up` would start (`kdk up --dry-run`), booting nothing."""
        req = BootRequest(kernel, accel, ssh_port, debug, libvirt, tuple(devices))
        return self.backend.dry_run(req, say)

    def down(self, destroy: bool = False) -> bool:
        """Stop the VM; False when it was not running. `destroy`: also remove
        everything kdk started for it (Vagrant: domain, volumes, pool, and
        libvirt's daemons and namespace when no other VM uses them) and
        forget its backend."""
        self._disconnect()
        if destroy and isinstance(self.backend, VagrantBackend):
            # `vagrant destroy` stops the domain itself: no clean halt first
            stopped = self.backend.record() is not None
            self.backend.destroy()
        else:
            stopped = self.backend.down()
        if destroy:
            forget(self.backend)
        return stopped

    def box_build(
        self, say: Callable[[str], None] = _quiet, force: bool = False
    ) -> tuple[Box, bool]:
        """kdk's Vagrant box, built unless cached (see kdk.vm.box); (box,
        whether it was built now). The project's Vagrantfile is pointed at it."""
        box, built = build_box(say, force)
        write_pointer(self.state, box)
        return box, built

    def connection(self) -> fabric.Connection:
        """An open fabric Connection to the running guest (`run`, `sudo`,
        `put`, `get`), with kdk's keys and the guest's host key pinned."""
        from .guest.connection import connection

        return connection(self.backend.endpoint(self.backend.require()))

    def status(self) -> dict[str, Any]:
        """What `kdk status --json` prints."""
        rec = self.backend.record()
        info: dict[str, Any] = {
            "running": rec is not None,
            "backend": self.backend.name,
            "state_dir": str(self.backend.state.path),
            "console_log": str(self.backend.state.console_log),
        }
        if isinstance(self.backend, VagrantBackend):
            info["libvirt"] = str(self.backend.libvirt.at)  # kdk up --libvirt's value
        if rec is not None:
            info.update(
                accel=rec.accel,
                kernel=rec.kernel,
                ssh_host=self.backend.endpoint(rec).host,
                ssh_port=rec.ssh_port,
                pid=rec.pid,
                uptime=round(uptime(rec), 1),
                ready_seconds=round(rec.ready_seconds, 2),
                debug=rec.debug,
                devices=list(rec.devices),
            )
        return info

    def guest(self) -> Guest:
        """An SSH connection to the running guest (VMNotRunning otherwise)."""
        return self.backend.guest()

    def _connected(self, rec: VMRecord) -> Guest:
        """The connection all of this Kdk's commands share, opened when there
        is none yet, when it dropped, or when the VM was replaced."""
        with self._connecting:
            g = self._guest
            if g is None or self._guest_pid != rec.pid or not g.connected:
                self._disconnect()
                g = self.backend.guest()
                g.connect()
                self._guest, self._guest_pid = g, rec.pid
            return g

    def _disconnect(self) -> None:
        if self._guest is not None:
            self._guest.close()
            self._guest = None

    @contextmanager
    def session(self) -> Iterator[Guest]:
        """The connected guest, its console watched while the block runs.

        A crash report on the console (oops, BUG, WARNING, lockup, panic)
        raises KernelCrash with the report. When the guest died of a crash
        or hung, a fresh VM is booted first, with the same kernel, accel and
        port, so the next command works. A VM that just stopped (killed from
        outside) is reported as lost and left stopped.
        """
        rec = self.backend.require()
        with self._watched(rec):
            yield self._connected(rec)

    @contextmanager
    def _watched(self, rec: VMRecord) -> Iterator[None]:
        """The console watch and recovery of `session` around a block that
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
                gdb.check_not_held(self.backend.state.path, e)
            if not gone and not hung:
                self._raise_crashes(console, offset)
                raise
            crashes = oops.parse(_read_from(console, offset))
            if gone and not crashes:  # killed from outside, or QEMU itself died
                raise VMLost(f"{e}, with no crash report on its console ({console}); "
                             "run `kdk up`") from None  # fmt: skip
            self.reboot(rec, "" if crashes else str(e))
            kept = self.backend.state.previous_console_log
            if crashes:
                raise _crash_error(crashes, kept, rebooted=True) from None
            raise VMLost(f"{e}; the guest hung with no crash report (see {kept}); "
                         "the VM was booted again") from None  # fmt: skip
        self._raise_crashes(console, offset)

    def _responsive(self, rec: VMRecord) -> bool:
        """Whether the guest still answers (a keepalive on a connection that
        works, or a new one)."""
        try:
            self._connected(rec).probe()
        except KdkError:
            return False
        return True

    def _wait_gone(self, rec: VMRecord, wait: float) -> bool:
        """Whether QEMU ended, waiting up to `wait` seconds for it."""
        deadline = time.monotonic() + wait
        while process_alive(rec.pid, str(self.backend.state.path)):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _raise_crashes(self, console: Path, offset: int) -> None:
        """KernelCrash for reports that appeared on a guest that still runs;
        a fatal one (an oops the kernel survived) gets a fresh VM."""
        crashes = oops.parse(_read_from(console, offset))
        if not crashes:
            return
        fatal = any(c.fatal for c in crashes)
        if fatal:
            self.reboot(self.backend.require())
            console = self.backend.state.previous_console_log
        raise _crash_error(crashes, console, rebooted=fatal)

    def reboot(self, rec: VMRecord, why: str = "") -> VMRecord:
        """Replace the VM by a fresh boot with the same kernel, accel and
        port (unless another kdk did that already); `why` is said first."""
        self.say(f"{why}; booting a fresh VM" if why else "booting a fresh VM")
        self._disconnect()
        return self.backend.replace(rec, self.say)

    def exec(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = None,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
        stdin: IO[bytes] | None = None,
    ) -> Result:
        """Run a command in the guest; output is captured and also copied to
        the given streams as it arrives."""
        with self.session() as g:
            return g.run(command, timeout=timeout, stdout=stdout, stderr=stderr, stdin=stdin)

    def _capture(
        self, rec: VMRecord, command: str, timeout: float, stdin: bytes | None = None
    ) -> Result:
        """A command whose output is wanted whole (a load's script), run
        inside `_watched`. This Kdk's own connection when it has one; else,
        in a new process, the VM's shared OpenSSH connection when there is
        one (kdk.guest.mux), which saves a connect."""
        if self._guest is None:
            res = mux.run(self.backend.endpoint(rec), self.backend.state.path, command, timeout,
                          feed=stdin or b"", capture=True)  # fmt: skip
            if res is not None:
                return res
        feed = None if stdin is None else io.BytesIO(stdin)
        return self._connected(rec).run(command, timeout=timeout, stdin=feed)

    def run_here(self, command: Sequence[str], *, timeout: float | None = None) -> int:
        """Run a command in the guest with this process's own stdin, stdout
        and stderr (`kdk exec`); its exit code. A new process has no
        connection yet: the command runs on the VM's shared OpenSSH
        connection (kdk.guest.mux) when there is one, which saves a connect.
        Crashes and a hung or lost guest are handled as in `session`."""
        rec = self.backend.require()
        tty_in = sys.stdin is None or sys.stdin.isatty()
        with self._watched(rec):
            res = mux.run(self.backend.endpoint(rec), self.backend.state.path, command,
                          timeout, tty_in)  # fmt: skip
        if res is not None:
            return res.exit_code
        stdin = None if tty_in else sys.stdin.buffer
        return self.exec(command, timeout=timeout, stdout=sys.stdout.buffer,
                         stderr=sys.stderr.buffer, stdin=stdin).exit_code  # fmt: skip

    @contextmanager
    def open_device(self, path: str, flags: int = os.O_RDWR) -> Iterator[GuestFile]:
        """A file opened in the guest (see kdk.device), closed at the end; the
        console is watched meanwhile, like any command's."""
        with self.session() as g, GuestFile(g, path, flags) as f:
            yield f

    @contextmanager
    def bpf(
        self, program: Path | str, probes: Probes, cflags: Sequence[str] = ()
    ) -> Iterator[Program]:
        """A BPF program (a .c file, or its text) compiled with bcc in the
        guest and attached; detached at the end (see kdk.bpf)."""
        text = program.read_text() if isinstance(program, Path) else program
        with self.session() as g:
            prog = Program(g, text, probes, list(cflags))
            try:
                yield prog
            finally:
                prog.close()

    def wire(self, pcap: Path | None = None) -> Wire:
        """The host end of the packet wire into the running guest, a scapy
        socket (see kdk.net.wire); `pcap` records every frame both ways."""
        from .net.wire import Wire

        self.backend.require()
        return Wire(self.backend.state.path, pcap)

    def vm_alive(self) -> bool:
        """Whether the VM runs (its record names a live QEMU)."""
        return self.backend.record() is not None

    # -- modules -----------------------------------------------------------
    def modules(self) -> list[ModuleSource]:
        return known_modules(self.project)

    def new(self, name: str, char: bool = False) -> list[Path]:
        """Make the module folder `name` (from the current folder when it is
        in the project, else from the project root); the files made."""
        here = Path.cwd()
        folder = (here if here.is_relative_to(self.project) else self.project) / name
        return new_module(folder.resolve(), self.project, char)

    def target_kernel(self, spec: str | None = None) -> Kernel:
        """The kernel to build for: the running guest's, else `spec` or the default."""
        rec = self.backend.record()
        return select_kernel(rec.kernel if rec is not None else spec)

    def build(self, spec: str, *, kernel: str | None = None, force: bool = False) -> Built:
        """Build a module (by name or path) for the guest kernel, if it changed."""
        return build(find_module(spec, self.project), self.target_kernel(kernel),
                     self.state / "builds", force=force)  # fmt: skip

    def module_file(self, spec: str, kernel: str | None = None) -> Path:
        """The .ko of a module given by name, folder or .ko file; one of kdk's
        to build is built for the guest kernel (or `kernel`) first if needed."""
        if spec.endswith(".ko") and Path(spec).is_file():
            return Path(spec).resolve()
        src = find_module(spec, self.project)
        built = build(src, self.target_kernel(kernel), self.state / "builds")
        return built.main_module(src.module or src.name)

    def inspect(self, spec: str, kernel: str | None = None) -> Inspection:
        """What a module's .ko holds and what it needs from the guest kernel
        (or `kernel`), read on the host before any load (kdk inspect)."""
        return inspect(self.module_file(spec, kernel), self.target_kernel(kernel))

    def load(self, spec: str, params: Sequence[str] = ()) -> LoadResult:
        """Build if needed, check vermagic, load what the module needs from
        its folder and the kernel, (re)load the module, and return the
        kernel log lines all that produced. LoadFailed carries the kernel's
        error text and those lines when an insmod fails."""
        prebuilt = spec.endswith(".ko") and Path(spec).is_file()
        src = None if prebuilt else find_module(spec, self.project)  # unknown: said first
        rec = self.backend.require()
        kernel, make = self._build_target(rec)
        built = None
        if src is None:
            ko = Path(spec).resolve()
            siblings = sorted(ko.parent.glob("*.ko"))
        else:
            built = build(src, kernel, self.state / "builds", make=make)
            ko, siblings = built.main_module(src.module or src.name), built.modules
        plan = self._plan(ko, siblings, kernel, make)
        staged = not ko.is_relative_to(self.project)
        target, *_ = steps = [_insmod_step(f, rec.kernel, staged) for f in [ko, *plan.providers]]
        providers = steps[1:]
        script = loading.load_script(target, providers, plan.kernel_modules, list(params), staged)
        stdin = loading.stage([*plan.providers, ko]) if staged else None
        log: list[kmsg.Record] = []
        tainted: list[str] = []
        try:
            with self._watched(rec):
                result = self._capture(rec, script, LOAD_TIMEOUT, stdin)
                log = kmsg.parse(result.stdout.decode(errors="replace"))
                m = re.search(rb"^kdk-taint (\d+) (\d+)$", result.stdout, re.M)
                tainted = taint.new_flags(int(m.group(1)), int(m.group(2))) if m else []
        except KernelCrash as e:  # the load's own lines and taint belong to the report
            said = f"loading {target.name} tainted the kernel: {', '.join(tainted)}"
            e.details = "\n".join(filter(None, [_format(log), said if tainted else "", e.details]))
            raise
        if not result.ok:
            raise loading.load_error(result.exit_code, target, providers,
                                     result.stderr.decode(errors="replace"),
                                     [r.text for r in log])  # fmt: skip
        needs = [*plan.kernel_modules, *(p.name for p in providers)]
        return LoadResult(target.name, ko, log, built is not None and built.rebuilt, tainted, built,
                          needs)  # fmt: skip

    def unload(self, spec: str) -> LoadResult:
        """rmmod the module, after the loaded modules of its folder that use
        it, and before the modules it needed (see load) that nothing else
        uses now; return the kernel log lines that produced."""
        rec = self.backend.require()
        ko = self._built_module(spec)
        name, dependents, providers = module_name(spec), [], []
        if ko is not None:
            siblings = sorted(ko.parent.glob("*.ko"))
            name = modinfo(ko).get("name") or module_name(ko.name)
            dependents = [module_name(d.name) for d in deps.Siblings(siblings).dependents(ko)]
            try:
                plan = self._plan(ko, siblings, *self._build_target(rec), fresh=False)
                providers = [module_name(p.name) for p in plan.providers]
            except deps.UnresolvedSymbol:  # it got them from outside the project: left alone
                pass
        with self._watched(rec):
            result = self._capture(rec, loading.unload_script(name, dependents, providers),
                                   LOAD_TIMEOUT)  # fmt: skip
        log = kmsg.parse(result.stdout.decode(errors="replace"))
        if not result.ok:
            reason = insmod_reason(result.stderr.decode(errors="replace"), [r.text for r in log])
            raise LoadFailed(f"rmmod {name} failed: {reason}", _format(log))
        return LoadResult(name, None, log, False)

    def _plan(
        self, ko: Path, siblings: list[Path], kernel: Kernel, make: Make | None, fresh: bool = True
    ) -> deps.Plan:
        """What `ko` needs loaded first: modules of its folder (else of the
        project) and of the kernel. A provider from the project is found
        among the .ko files its folder holds, which may be a build for
        another kernel (another VM's); the one loaded is that folder's build
        for `kernel`, made first if there is none (`fresh`; an unload needs
        only the providers' names, and builds nothing)."""
        folder_of: dict[Path, ModuleSource] = {}

        def project() -> list[Path]:
            for m in self.modules():
                folder_of.update(dict.fromkeys(built_modules(m.path), m))
            return list(folder_of)

        symbols = deps.kernel_symbols(self._symbols_dir(kernel))
        plan = deps.plan_in_project(ko, siblings, symbols, project)
        if not fresh:
            return plan
        stamps = self.state / "builds"
        providers = [build(folder_of[p], kernel, stamps, make=make).main_module(p.name)
                     if p in folder_of else p for p in plan.providers]  # fmt: skip
        return deps.Plan(plan.kernel_modules, providers)

    def _build_target(self, rec: VMRecord) -> tuple[Kernel, Make | None]:
        """The guest's kernel and where to build for it: on the host when
        the host has its headers, else, for a guest with its own kernel
        (Vagrant), in the guest, into the project folder it shares
        (KDK_BUILD=guest: in the guest always). vermagic is checked either way."""
        if not isinstance(self.backend, VagrantBackend):
            return select_kernel(rec.kernel), None
        kernel = Kernel(rec.kernel, BOOT / f"vmlinuz-{rec.kernel}", MODULES / rec.kernel)
        if kernel.build_dir.is_dir() and os.environ.get("KDK_BUILD") != "guest":
            return kernel, None
        return kernel, self.backend.make(self._connected(rec))

    def _symbols_dir(self, kernel: Kernel) -> Path:
        """Where the Module.symvers of `kernel` is: its build tree on the
        host, else a copy of the guest's (built in the guest)."""
        if kernel.build_dir.is_dir() or not isinstance(self.backend, VagrantBackend):
            return kernel.build_dir
        return self.backend.symbols_dir(self._connected(self.backend.require()), kernel.release)

    def _built_module(self, spec: str) -> Path | None:
        """The built .ko of a module given by name, folder or .ko file; None
        for a name kdk does not know (taken as the kernel's, e.g. veth) or a
        module not built yet."""
        if spec.endswith(".ko"):
            return Path(spec).resolve() if Path(spec).is_file() else None
        try:
            src = find_module(spec, self.project)
        except UnknownModule:
            if "/" in spec:
                raise
            return None
        kos = built_modules(src.path)
        return main_module(kos, src.module or src.name) if kos else None

    def gdb_command(self, spec: str | None = None, args: Sequence[str] = ()) -> list[str]:
        """The gdb command line (kdk gdb) attached to the guest through QEMU's
        gdb stub, with the module's symbols where the guest loaded it; `args`
        are gdb's own (e.g. -batch -ex ...)."""
        rec = self.backend.require()
        symbol_file = None
        if spec is not None:
            ko = self.module_file(spec, rec.kernel)  # the build the guest's kernel loads
            name = modinfo(ko).get("name") or module_name(ko.name)
            with self.session() as g:
                found = g.run(gdb.sections_script(name), timeout=30)
            if found.exit_code == 3:
                raise KdkError(f"{name} is not loaded in the guest: `kdk load {spec}` first")
            symbol_file = gdb.symbol_file_command(
                ko, name, found.stdout.decode(), self.backend.state.path / "gdb"
            )
        vmlinux = gdb.debug_vmlinux(rec.kernel)
        if vmlinux is None:  # the kernel's function names, from the guest (once per kernel)
            image = select_kernel(rec.kernel).image.stat()
            vmlinux = self.state / "cache" / f"kallsyms-{rec.kernel}-{image.st_mtime_ns}.elf"
            if not vmlinux.exists():
                with self.session() as g:
                    text = g.check(gdb.KALLSYMS_SCRIPT, timeout=120).stdout.decode()
                gdb.kallsyms_elf(text, vmlinux)
        return gdb.gdb_argv(self.backend.state.path, vmlinux, symbol_file, args)

    def dmesg(self) -> list[kmsg.Record]:
        """The guest's whole kernel log."""
        with self.session() as g:
            return kmsg.parse(g.check(kmsg.DUMP).stdout.decode(errors="replace"))


def _format(log: list[kmsg.Record]) -> str:
    return "\n".join(r.format() for r in log)


def _insmod_step(ko: Path, release: str, staged: bool) -> loading.Insmod:
    """A module checked against the guest's kernel, with its guest path."""
    info = modinfo(ko)
    check_vermagic(ko, info, release)
    path = loading.staged_path(ko) if staged else str(ko)
    return loading.Insmod(info.get("name") or module_name(ko.name), path)


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


def _crash_error(crashes: list[oops.Crash], console: Path, rebooted: bool) -> KernelCrash:
    first = crashes[0]
    what = first.what
    after = "; the VM was booted again" if rebooted else ""
    details = "\n".join(c.format(console) for c in crashes)
    return KernelCrash(f"the guest kernel {what}: {first.summary()}{after}", details)
