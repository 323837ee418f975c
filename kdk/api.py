"""The library the CLI is a thin layer over: one `Kdk` per project.

Everything `kdk` does on the command line is a method here, so tests and
users' own scripts do the same things the same way.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from . import kmsg
from .backend import Backend
from .build import Built, build, read_modules_order
from .errors import LoadFailed, UnknownModule
from .guest import Guest, Result
from .kernel import Kernel, check_vermagic, modinfo, module_name, select_kernel
from .project import (
    ModuleSource,
    find_module,
    known_modules,
    project_root,
    state_root,
    vm_name,
)
from .qemu import QemuBackend
from .state import VMRecord, process_alive, uptime

LOAD_TIMEOUT = 60.0  # an insmod whose init hangs is reported, not waited on forever
STAGED_KO = "/run/kdk/staged.ko"  # where a module from outside the project is copied


def _quiet(_: str) -> None:
    """A `say`/`step` callback that shows nothing."""


@dataclass(frozen=True)
class LoadResult:
    """What `kdk load`/`kdk unload` did in the guest."""

    name: str  # the module's name in the kernel
    ko: Path | None  # the file that was loaded (None for an unload)
    log: list[kmsg.Record]  # exactly the kernel log records the command produced
    built: bool  # whether sources were rebuilt first


class Kdk:
    """A project, its state folder and its VM."""

    def __init__(
        self, project: Path | None = None, state: Path | None = None, vm: str | None = None
    ) -> None:
        self.project = project or project_root()
        self.state = state or state_root(self.project)
        self.backend: Backend = QemuBackend(self.project, self.state, vm or vm_name())

    # -- the VM ------------------------------------------------------------
    def up(
        self,
        kernel: str | None = None,
        accel: str = "auto",
        ssh_port: int | None = None,
        say: Callable[[str], None] = _quiet,
        step: Callable[[str], None] = _quiet,
    ) -> tuple[VMRecord, bool]:
        """Boot the VM unless it runs; (record, whether it was booted now)."""
        return self.backend.up(select_kernel(kernel), accel, say, step, ssh_port)

    def down(self) -> bool:
        """Stop the VM; False when it was not running."""
        return self.backend.down()

    def status(self) -> dict[str, Any]:
        """What `kdk status --json` prints."""
        rec = self.backend.record()
        info: dict[str, Any] = {
            "running": rec is not None,
            "backend": self.backend.name,
            "state_dir": str(self.backend.state.path),
            "console_log": str(self.backend.state.console_log),
        }
        if rec is not None:
            info.update(
                accel=rec.accel,
                kernel=rec.kernel,
                ssh_port=rec.ssh_port,
                pid=rec.pid,
                uptime=round(uptime(rec), 1),
                ready_seconds=round(rec.ready_seconds, 2),
            )
        return info

    def guest(self) -> Guest:
        """An SSH connection to the running guest (VMNotRunning otherwise)."""
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
        """Run a command in the guest; output is captured and also copied to
        the given streams as it arrives."""
        with self.guest() as g:
            return g.run(command, timeout=timeout, stdout=stdout, stderr=stderr, stdin=stdin)

    def vm_alive(self) -> bool:
        rec = self.backend.record()
        return rec is not None and process_alive(rec.pid, str(self.backend.state.path))

    # -- modules -----------------------------------------------------------
    def modules(self) -> list[ModuleSource]:
        return known_modules(self.project)

    def target_kernel(self, spec: str | None = None) -> Kernel:
        """The kernel to build for: the running guest's, else `spec` or the default."""
        rec = self.backend.record()
        return select_kernel(rec.kernel if rec is not None else spec)

    def build(self, spec: str, *, kernel: str | None = None, force: bool = False) -> Built:
        """Build a module (by name or path) for the guest kernel, if it changed."""
        return build(find_module(spec, self.project), self.target_kernel(kernel),
                     self.state / "builds", force=force)  # fmt: skip

    def load(self, spec: str, params: Sequence[str] = ()) -> LoadResult:
        """Build if needed, check vermagic, (re)load the module, and return
        the kernel log lines the load produced. LoadFailed carries the
        kernel's error text and those lines when insmod fails."""
        prebuilt = spec.endswith(".ko") and Path(spec).is_file()
        src = None if prebuilt else find_module(spec, self.project)  # unknown: said first
        rec = self.backend.require()
        if src is None:
            ko, rebuilt = Path(spec).resolve(), False
        else:
            built = build(src, select_kernel(rec.kernel), self.state / "builds")
            ko, rebuilt = built.main_module(src.name), built.rebuilt
        info = modinfo(ko)
        check_vermagic(ko, info, rec.kernel)
        name = info.get("name") or module_name(ko.name)
        staged = not ko.is_relative_to(self.project)
        path = STAGED_KO if staged else str(ko)
        script = "\n".join([
            "before=$(" + kmsg.LAST_SEQ + ")",
            *([f"cat > {path}"] if staged else []),
            f"[ ! -d /sys/module/{name} ] || rmmod {name} || exit 100",
            f"insmod {shlex.quote(path)} {shlex.join(params)}",
            "rc=$?",
            kmsg.dump_since("before"),
            "exit $rc",
        ])  # fmt: skip
        with self.guest() as g, ko.open("rb") if staged else nullcontext() as data:
            result = g.run(script, timeout=LOAD_TIMEOUT, stdin=data)
        log = kmsg.parse(result.stdout.decode(errors="replace"))
        if result.exit_code == 100:
            raise LoadFailed(f"{name} is loaded and could not be unloaded for the reload: "
                             f"{_insmod_error(result.stderr)}", _format(log))  # fmt: skip
        if not result.ok:
            raise LoadFailed(f"insmod {name} failed: {_insmod_error(result.stderr)}", _format(log))
        return LoadResult(name, ko, log, rebuilt)

    def unload(self, spec: str) -> LoadResult:
        """rmmod the module and return the kernel log lines that produced."""
        self.backend.require()
        name = self._loaded_name(spec)
        script = "\n".join([
            "before=$(" + kmsg.LAST_SEQ + ")",
            f"[ -d /sys/module/{name} ] || {{ echo '{name} is not loaded' >&2; exit 1; }}",
            f"rmmod {name}",
            "rc=$?",
            kmsg.dump_since("before"),
            "exit $rc",
        ])  # fmt: skip
        with self.guest() as g:
            result = g.run(script, timeout=LOAD_TIMEOUT)
        log = kmsg.parse(result.stdout.decode(errors="replace"))
        if not result.ok:
            raise LoadFailed(f"rmmod {name} failed: {_insmod_error(result.stderr)}", _format(log))
        return LoadResult(name, None, log, False)

    def _loaded_name(self, spec: str) -> str:
        """The kernel's name for a module given by name, folder or .ko file;
        a name kdk does not know is taken as the kernel's (e.g. veth)."""
        if spec.endswith(".ko"):
            return module_name(spec)
        try:
            src = find_module(spec, self.project)
        except UnknownModule:
            if "/" in spec:
                raise
            return module_name(spec)
        built = read_modules_order(src.path)
        return module_name(
            Built(built, False, "").main_module(src.name).name if built else src.name
        )

    def dmesg(self) -> list[kmsg.Record]:
        """The guest's whole kernel log."""
        with self.guest() as g:
            return kmsg.parse(g.check(kmsg.DUMP).stdout.decode(errors="replace"))


def _format(log: list[kmsg.Record]) -> str:
    return "\n".join(r.format() for r in log)


def _insmod_error(stderr: bytes) -> str:
    """The kernel's reason from insmod/rmmod's message, e.g. 'Invalid parameters'."""
    text = stderr.decode(errors="replace").strip()
    last = text.splitlines()[-1] if text else "no message"
    return last.rsplit(": ", 1)[-1] if "ERROR" in last else last
