"""`kdk load` and `kdk unload`: a module built for the guest's kernel, what
it needs loaded first, and exactly the kernel log lines of the load.

A load plans what the module needs (modules of its folder or of the
project that export its symbols, and the kernel's own), builds what is
out of date for the guest's kernel, checks vermagic on the host, and runs
one script in the guest (kdk.modules.loading) under the session's watch,
so a crash during the load is reported with the load's own log lines.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KernelCrash, KernelReport, MissingDependency, UnknownModule
from ..kernel import Kernel, module_name, select_kernel
from ..klog import kmsg, reports
from ..make import Make
from ..project import ModuleSource, find_module, known_modules, names_a_path
from ..session import Session, report_error
from ..state import VMRecord
from . import deps, faultinject, loading, taint
from .build import Built, build, built_modules, kept_modules, main_module
from .info import check_vermagic, modinfo
from .inspect import Inspection, disassemble, inspect

LOAD_TIMEOUT = 60.0  # an unload whose rmmod hangs is reported, not waited on forever


@dataclass(frozen=True)
class LoadResult:
    """What `kdk load`/`kdk unload` did in the guest."""

    name: str  # the module's name in the kernel
    ko: Path | None  # the file that was loaded (None for an unload)
    # exactly the kernel log records the command produced, but for the
    # kernel's remarks on the VM's timing meanwhile (kmsg.VM_TIMING): `timing`
    log: list[kmsg.Record]
    built: bool  # whether sources were rebuilt first
    tainted: list[str] = field(default_factory=list)  # new taint flags beyond O and E
    build: Built | None = None  # how it was built (None: a prebuilt .ko, or an unload)
    needs: list[str] = field(default_factory=list)  # modules loaded first unless loaded
    # where the time went: (phase, seconds), the host's then the guest's (kdk load -v)
    times: list[tuple[str, float]] = field(default_factory=list)
    timing: list[kmsg.Record] = field(default_factory=list)


@dataclass(frozen=True)
class _Load:
    """A load of a module, planned (Loader._prepare)."""

    rec: VMRecord
    ko: Path
    built: Built | None  # None: a .ko given as a file
    plan: deps.Plan
    target: loading.Insmod
    providers: list[loading.Insmod]  # what it needs from its folder, in order
    staged: bool  # the .ko files go to the guest by tar (not under the shared project)

    def script(self, params: Sequence[str], run: str = "") -> str:
        """The guest's load script (kdk.modules.loading); `run`: the
        command that loads the target instead of insmod."""
        return loading.load_script(
            self.target, self.providers, self.plan.kernel_modules, list(params), self.staged, run
        )

    def stdin(self) -> bytes | None:
        """The staged .ko files as a tar archive for the script's stdin."""
        return loading.stage([*self.plan.providers, self.ko]) if self.staged else None

    @property
    def timeout(self) -> float:
        return loading.script_timeout(1 + len(self.providers))


class Loader:
    """Builds and loads the project's modules into the session's guest."""

    def __init__(self, project: Path, state: Path, session: Session) -> None:
        self.project = project
        self.builds = state / "builds"  # build stamps and the .ko files guests load
        self.session = session
        self.backend = session.backend

    def target_kernel(self, spec: str | None = None) -> Kernel:
        """The kernel to build for: the running guest's, else `spec` or the default."""
        rec = self.backend.record()
        return select_kernel(rec.kernel if rec is not None else spec)

    def build(self, spec: str, *, kernel: str | None = None, force: bool = False) -> Built:
        """Build a module (by name or path) for the guest kernel, if it changed."""
        src = find_module(spec, self.project)
        return build(src, self.target_kernel(kernel), self.builds, force=force)

    def module_file(self, spec: str, kernel: str | None = None) -> Path:
        """The .ko of a module given by name, folder or .ko file; one of kdk's
        to build is built for the guest kernel (or `kernel`) first if needed."""
        if spec.endswith(".ko") and Path(spec).is_file():
            return Path(spec).resolve()
        src = find_module(spec, self.project)
        built = build(src, self.target_kernel(kernel), self.builds)
        return built.main_module(src.module or src.name, bool(src.module))

    def inspect(self, spec: str, kernel: str | None = None) -> Inspection:
        """What a module's .ko holds and what it needs from the guest kernel
        (or `kernel`), read on the host before any load (kdk inspect)."""
        return inspect(self.module_file(spec, kernel), self.target_kernel(kernel))

    def disassemble(self, spec: str, function: str, kernel: str | None = None) -> str:
        """`function` of a module's .ko as objdump shows it (kdk inspect --disasm)."""
        return disassemble(self.module_file(spec, kernel), function)

    def load(self, spec: str, params: Sequence[str] = ()) -> LoadResult:
        """Build if needed, check vermagic, load what the module needs from
        its folder and the kernel, (re)load the module, and return the
        kernel log lines all that produced. LoadFailed carries the kernel's
        error text and those lines when an insmod fails."""
        started = time.monotonic()
        load = self._prepare(spec)
        rec, target, providers = load.rec, load.target, load.providers
        log: list[kmsg.Record] = []
        tainted: list[str] = []
        try:
            with self.session.watched(rec):
                planned = time.monotonic()
                result = self.session.capture(rec, load.script(params), load.timeout, load.stdin())
                ran = time.monotonic()
                log = kmsg.parse(result.stdout.decode(errors="replace"))
                m = re.search(rb"^kdk-taint (\d+) (\d+)$", result.stdout, re.M)
                tainted = taint.new_flags(int(m.group(1)), int(m.group(2))) if m else []
        except (KernelCrash, KernelReport) as e:
            # the load's own lines and taint belong to the report
            said = f"loading {target.name} tainted the kernel: {', '.join(tainted)}"
            e.details = "\n".join(filter(None, [_format(log), said if tainted else "", e.details]))
            raise
        if not result.ok:
            stderr = result.stderr.decode(errors="replace")
            lines = [r.text for r in log]
            raise loading.load_error(
                result.exit_code, target, providers, stderr, lines, list(params)
            )
        needs = [*load.plan.kernel_modules, *(p.name for p in providers)]
        built = load.built
        rebuilt = built is not None and built.rebuilt
        in_guest = loading.guest_times(result.stdout.decode(errors="replace"))
        times = [
            ("host: build check, vermagic, plan", planned - started),
            ("ssh: the command's channel", ran - planned - sum(t for _, t in in_guest)),
            *(("guest: " + phase, t) for phase, t in in_guest),
        ]
        own, timing = kmsg.apart(log)
        return LoadResult(target.name, load.ko, own, rebuilt, tainted, built, needs, times, timing)

    def _prepare(self, spec: str) -> _Load:
        """What a load of `spec` needs: the VM, the .ko (built if needed),
        its plan, the target's and providers' insmod steps, whether staged."""
        prebuilt = spec.endswith(".ko") and Path(spec).is_file()
        src = None if prebuilt else find_module(spec, self.project)  # unknown: said first
        rec = self.backend.require()
        kernel, make = self._build_target(rec)
        built = None
        if src is None:
            ko = Path(spec).resolve()
            siblings = sorted(ko.parent.glob("*.ko"))
        else:
            built = build(src, kernel, self.builds, make=make)
            ko, siblings = (
                built.main_module(src.module or src.name, bool(src.module)),
                built.modules,
            )
        plan = self._plan(rec, ko, siblings, kernel, make)
        staged = not ko.is_relative_to(self.project)
        target, *providers = [_insmod_step(f, rec.kernel, staged) for f in [ko, *plan.providers]]
        return _Load(rec, ko, built, plan, target, providers, staged)

    def fault_inject(
        self, spec: str, params: Sequence[str] = (), nth: int | None = None
    ) -> faultinject.Sweep:
        """Loads of `spec` (after what it needs) with the N-th allocation of
        its init made to fail: N = `nth`, else a sweep (kdk.modules.faultinject).
        KernelCrash when the kernel crashed (the VM is booted again)."""
        load = self._prepare(spec)
        rec, target = load.rec, load.target
        cache = self.builds.parent / "cache" / "fault-inject"
        copy = faultinject.stripped(load.ko, cache)
        run = faultinject.command(
            faultinject.program(cache), str(copy), target.name, list(params), nth
        )
        timeout = load.timeout + faultinject.SCRIPT_TIMEOUT
        result = None
        try:
            with self.session.watched(rec):
                result = self.session.capture(rec, load.script(params, run), timeout, load.stdin())
        except KernelReport:  # each step's own log names its reports (faultinject.parse)
            if result is None:
                raise
        out = result.stdout.decode(errors="replace")
        if faultinject.NO_FAULT_INJECTION in out:
            raise faultinject.no_fault_injection(rec.kernel)
        if not result.ok and not out.startswith("{"):
            stderr = result.stderr.decode(errors="replace")
            raise loading.load_error(
                result.exit_code, target, load.providers, stderr, [], list(params)
            )
        return faultinject.parse(out, target.name)

    def fault_leaks(self, sweeps: list[faultinject.Sweep]) -> bool:
        """kmemleak's scan after sweeps (their newest objects old enough to
        be reported first): each object a step's load allocated becomes
        that step's problem. One scan for all the sweeps: a scan of this
        kernel under TCG takes half a minute or more. False when the
        kernel has no kmemleak."""
        rec = self.backend.require()
        script = f"sleep {faultinject.KMEMLEAK_MIN_AGE:g}\n{loading.SCAN_LEAKS}"
        with self.session.watched(rec):
            result = self.session.capture(rec, script, faultinject.SCRIPT_TIMEOUT)
        out = result.stdout.decode(errors="replace")
        if out.startswith(loading.NO_KMEMLEAK):
            return False
        listed = out.partition(loading.LEAKS_BEGIN)[2].partition(loading.LEAKS_END)[0]
        faultinject.attribute_leaks(listed, sweeps)
        return True

    def unload(self, spec: str, leaks: bool = False) -> LoadResult:
        """rmmod the module, after the loaded modules of its folder that use
        it, and before the modules it needed (see load) that nothing else
        uses now; return the kernel log lines that produced. With `leaks`
        (a kernel with kmemleak), KernelReport afterwards for each object
        kmemleak finds unreferenced that these modules allocated."""
        rec = self.backend.require()
        ko = self._built_module(spec, rec.kernel)
        name, dependents, providers = module_name(spec), [], []
        if ko is not None:
            siblings = sorted(ko.parent.glob("*.ko"))
            name = modinfo(ko).get("name") or module_name(ko.name)
            dependents = [module_name(d.name) for d in deps.Siblings(siblings).dependents(ko)]
            kernel, _ = self._build_target(rec)
            try:
                plan = self._plan(rec, ko, siblings, kernel, None, fresh=False)
                providers = [module_name(p.name) for p in plan.providers]
            except deps.UnresolvedSymbol:  # it got them from outside the project: left alone
                pass
        script = loading.unload_script(name, dependents, providers, leaks)
        with self.session.watched(rec):
            result = self.session.capture(rec, script, LOAD_TIMEOUT + 60 * leaks)
        out = result.stdout.decode(errors="replace")
        log = kmsg.parse(out)
        if out.startswith(loading.NO_KMEMLEAK):
            raise MissingDependency(
                f"kernel {rec.kernel} has no kmemleak ({loading.KMEMLEAK}); "
                "boot one of `kdk kernel build --debug`"
            )
        if not result.ok:
            stderr = result.stderr.decode(errors="replace")
            raise loading.unload_error(result.exit_code, name, stderr, log)
        listed = out.partition(loading.LEAKS_BEGIN)[2].partition(loading.LEAKS_END)[0]
        found = reports.leaks(listed, {name, *dependents, *providers})
        if found:  # the unload's own lines first
            error = report_error(found, None)
            error.details = "\n".join(filter(None, [_format(log), error.details]))
            raise error
        own, timing = kmsg.apart(log)
        return LoadResult(name, None, own, False, timing=timing)

    def _build_target(self, rec: VMRecord) -> tuple[Kernel, Make | None]:
        return self.backend.build_target(rec, lambda: self.session.connected(rec))

    def _plan(
        self,
        rec: VMRecord,
        ko: Path,
        siblings: list[Path],
        kernel: Kernel,
        make: Make | None,
        fresh: bool = True,
    ) -> deps.Plan:
        """What `ko` needs loaded first: modules of its folder (else of the
        project) and of the kernel. A provider from the project is found
        among the .ko files its folder holds, which may be a build for
        another kernel (another VM's); the one loaded is that folder's build
        for `kernel`, made first if there is none (`fresh`; an unload needs
        only the providers' names, and builds nothing)."""
        folder_of: dict[Path, ModuleSource] = {}

        def project() -> list[Path]:
            for m in known_modules(self.project):
                folder_of.update(dict.fromkeys(built_modules(m.path), m))
            return list(folder_of)

        symbols = self.backend.symbols_dir(kernel, lambda: self.session.connected(rec))
        plan = deps.plan_in_project(ko, siblings, deps.kernel_symbols(symbols), project)
        if not fresh:
            return plan
        providers = [
            build(folder_of[p], kernel, self.builds, make=make).main_module(p.name)
            if p in folder_of
            else p
            for p in plan.providers
        ]
        return deps.Plan(plan.kernel_modules, providers)

    def _built_module(self, spec: str, release: str) -> Path | None:
        """The built .ko of a module given by name, folder or .ko file: its
        folder's build for the kernel `release` (the one the guest loaded),
        else the folder's last build (for another kernel); None for a name
        kdk does not know (taken as the kernel's, e.g. veth) or a module not
        built yet."""
        if spec.endswith(".ko"):
            return Path(spec).resolve() if Path(spec).is_file() else None
        try:
            src = find_module(spec, self.project)
        except UnknownModule:
            if names_a_path(spec):
                raise
            return None
        kos = kept_modules(src, release, self.builds) or built_modules(src.path)
        try:
            return main_module(kos, src.module or src.name, bool(src.module)) if kos else None
        except UnknownModule:
            if src.module:  # the last build of its folder did not make it
                return None
            raise


def _format(log: list[kmsg.Record]) -> str:
    return "\n".join(r.format() for r in log)


def _insmod_step(ko: Path, release: str, staged: bool) -> loading.Insmod:
    """A module checked against the guest's kernel, with its guest path."""
    info = modinfo(ko)
    check_vermagic(ko, info, release)
    path = loading.staged_path(ko) if staged else str(ko)
    return loading.Insmod(info.get("name") or module_name(ko.name), path)
