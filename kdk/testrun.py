"""`kdk test`: the tests of modules, drivers and labs, run in the running VM.

They are the same pytest files `make test` runs (`kmods/*/test_*.py`,
`drivers/*/test_*.py`, `rawnet/*/test_*.py`; `kdk test rawnet` runs every
lab's), and a module folder's C files that define KUnit suites (one test
per case: kdk.testing.kunit); kdk runs pytest with KDK_VM naming the
current VM and sums the JUnit XML up per module. With `jobs` above 1, test
files run in that many VMs at once (pytest-xdist, a file's tests in one
VM): VMs of the running VM's kernel that the test session boots and
stops, the host's cores shared out among them; with several kernels,
that many kernels' runs at once, in VMs whose CPUs are shared out too.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from .api import Kdk
from .errors import KdkError, KernelCrash, MissingDependency
from .kernel import Kernel, select_kernels
from .modules import kunit
from .modules.build import main_module
from .modules.faultinject import Sweep, table
from .project import ModuleSource, find_module, known_modules
from .vm.qemu import shared_cpus


@dataclass
class Tally:
    """How one module's tests went."""

    name: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0


def test_files(mod: ModuleSource) -> list[Path]:
    """Its test_*.py files and its C files that define KUnit suites; for
    a KUnit test module named by its own name (`kdk test kdkchar_kunit`),
    its suites alone."""
    suites = kunit.test_sources(mod)
    own = [c for c in suites if mod.module and kunit.module_of(c) == mod.module]
    return own or sorted(mod.path.glob("test_*.py")) + suites


def labs(project: Path, name: str | None = None) -> list[ModuleSource]:
    """The packet labs with tests (rawnet/<lab>/): all of them for None or
    "rawnet", else the one named (none if there is no such lab)."""
    root = project / "rawnet"
    found = [ModuleSource(p.name, p) for p in sorted(root.glob("*/")) if any(p.glob("test_*.py"))]
    return found if name in (None, "rawnet") else [m for m in found if m.name == name]


def tested_modules(k: Kdk) -> list[ModuleSource]:
    """The project's modules and drivers that have tests (the labs aside)."""
    return [m for m in k.modules() if test_files(m)]


def select(k: Kdk, names: list[str]) -> list[ModuleSource]:
    """The named modules and labs (all that have tests when none is named)."""
    if not names:
        return tested_modules(k) + labs(k.project)
    mods = [m for n in names for m in labs(k.project, n) or [find_module(n, k.project)]]
    for m in mods:
        if not test_files(m):
            raise KdkError(f"{m.name} has no tests (no test_*.py, no KUnit suite in {m.path})")
    return mods


def tally(junit: Path, mods: list[ModuleSource]) -> list[Tally]:
    """Per-module counts from pytest's JUnit XML."""
    by_folder = {m.path.name: Tally(m.name) for m in mods}
    for case in ET.parse(junit).iter("testcase"):
        parts = case.get("classname", "").split(".")
        t = next((by_folder[p] for p in parts if p in by_folder), None)
        if t is None:
            continue
        t.seconds += float(case.get("time", 0))
        if case.find("skipped") is not None:
            t.skipped += 1
        elif case.find("failure") is not None or case.find("error") is not None:
            t.failed += 1
        else:
            t.passed += 1
    return list(by_folder.values())


def _pytest(
    k: Kdk,
    mods: list[ModuleSource],
    xml: Path,
    env: dict[str, str],
    ktap: bool = False,
    vms: int = 1,
    out: IO[bytes] | None = None,
) -> int:
    """pytest over the modules' tests in `vms` VMs (pytest-xdist workers,
    each test file in one), its compact output to stdout as it comes (or
    with its errors to `out`), JUnit XML to `xml`, with `ktap` the KTAP of
    the KUnit suites after it; its exit code."""
    argv = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "--no-header",
        "-rfEs",  # failures, errors, and why tests skipped (one line per reason)
        "--tb=short",
        "-p",
        "no:cacheprovider",
        *(["-n", str(vms), "--dist", "loadfile"] if vms > 1 else []),
        f"--junitxml={xml}",
        *(["--kdk-ktap"] if ktap else []),
        *(str(f) for m in mods for f in test_files(m)),
    ]
    # An outer pytest-xdist worker's variables (kdk test run from a test)
    # would name another VM in this run's test session.
    own = {n: v for n, v in os.environ.items() if not n.startswith("PYTEST_XDIST_")}
    err = None if out is None else subprocess.STDOUT
    return subprocess.run(argv, cwd=k.project, env=own | env, stdout=out, stderr=err).returncode


def run(
    k: Kdk, names: list[str], junit: Path | None = None, ktap: bool = False, jobs: int = 1
) -> tuple[int, list[Tally]]:
    """Run the tests in the running VM, and with `jobs` above 1 in that
    many VMs of its kernel at once; (pytest's exit code, tallies).
    pytest's own compact output goes to stdout as it comes (with `ktap`,
    the KTAP of the KUnit suites after it)."""
    mods = select(k, names)
    rec = k.backend.require()
    with tempfile.TemporaryDirectory(prefix="kdk-test-") as tmp:
        xml = junit or Path(tmp, "junit.xml")
        # Several VMs at once are the run's own, the host's cores shared
        # out among them (kdk.testing's guest_cpus): the running VM's CPUs
        # may be more than its share.
        vm = k.backend.state.path.name + (f"-j{jobs}" if jobs > 1 else "")
        env = {"KDK_VM": vm, "KDK_KERNEL": rec.kernel}
        code = _pytest(k, mods, xml, env, ktap, jobs)
        return code, tally(xml, mods) if xml.exists() else []


@dataclass(frozen=True)
class KernelRun:
    """The tests of the modules on one kernel, in a VM of its own."""

    kernel: str  # the release the VM ran
    vm: str  # the VM's name (its state folder under .kdk/vms)
    code: int  # pytest's exit code
    tallies: list[Tally]  # per module, in the order of the modules


def run_matrix(
    k: Kdk,
    names: list[str],
    kernels: list[str],
    junit: Path | None = None,
    ktap: bool = False,
    jobs: int = 1,
) -> list[KernelRun]:
    """The same tests on each kernel (releases, prefixes or "all"), `jobs`
    kernels at once, each in its own VM (`<vm>-<release>`: own state folder
    and port), booted for the run and stopped after it unless it was up
    already. One at a time, pytest's output comes as it comes; else each
    kernel's whole when its run ends. `junit` gets one file per kernel, the
    release added to its name."""
    mods = select(k, names)

    def one(kernel: Kernel) -> KernelRun:
        vm = f"{k.backend.state.path.name}-{kernel.release}"
        head = f"== {kernel.release} (VM {vm})"
        env = {"KDK_VM": vm, "KDK_KERNEL": kernel.release}
        if jobs > 1:
            env["KDK_CPUS"] = str(shared_cpus(jobs))
        with tempfile.TemporaryDirectory(prefix="kdk-test-") as tmp:
            xml = Path(tmp, "junit.xml")
            if junit is not None:
                xml = junit.with_name(f"{junit.stem}-{kernel.release}{junit.suffix}")
            if jobs == 1:
                print(head, flush=True)
                code = _pytest(k, mods, xml, env, ktap)
            else:
                log = Path(tmp, "output")
                with log.open("wb") as out:
                    code = _pytest(k, mods, xml, env, ktap, out=out)
                print(f"{head}\n{log.read_text(errors='replace')}", end="", flush=True)
            return KernelRun(kernel.release, vm, code, tally(xml, mods) if xml.exists() else [])

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        return list(pool.map(one, select_kernels(kernels)))


def verdict(t: Tally) -> str:
    """One word for a module's tests: FAIL, ok, skipped or none."""
    return "FAIL" if t.failed else "ok" if t.passed else "skipped" if t.skipped else "none"


def matrix_table(runs: list[KernelRun]) -> str:
    """Module x kernel -> verdict and passed/total, a row per module; a kernel
    whose run ended without results (pytest did not get to write them) says
    so in its column."""
    names = list(dict.fromkeys(t.name for r in runs for t in r.tallies))
    rows = [["module", *(r.kernel for r in runs)]]
    for name in names:
        row = [name]
        for r in runs:
            t = next((t for t in r.tallies if t.name == name), None)
            total = t.passed + t.failed + t.skipped if t else 0
            row.append(f"{verdict(t)} {t.passed}/{total}" if t else f"no result ({r.code})")
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def sweep_targets(words: list[str], project: Path) -> list[tuple[ModuleSource, list[str]]]:
    """`kdk test --fault-inject`'s NAMEs, each with the PARAM=VALUE words
    after it (its loads' parameters)."""
    targets: list[tuple[ModuleSource, list[str]]] = []
    for word in words:
        if "=" in word and os.sep not in word:
            if not targets:
                raise KdkError(
                    f"{word}: a parameter goes after its module: "
                    "kdk test --fault-inject NAME PARAM=VALUE..."
                )
            targets[-1][1].append(word)
        else:
            targets.append((find_module(word, project), []))
    return targets


def swept_by_default(project: Path) -> list[ModuleSource]:
    """What `kdk test --fault-inject` sweeps when no module is named: every
    module folder of the project but those under its tests/ (fixtures of
    tests, such as a module placed to be found elsewhere)."""
    root = project.resolve()
    return [m for m in known_modules(root) if m.path.relative_to(root).parts[:1] != ("tests",)]


def fault_inject(k: Kdk, names: list[str]) -> list[Sweep]:
    """`kdk test --fault-inject`: every module of the named folders (see
    swept_by_default when none is named; only the module a name picks in
    a folder of several) swept with the parameters given after its name,
    one after the other, each table printed when its sweep is done; then
    kmemleak's one scan, and the tables again for the sweeps it found
    leaks in."""
    targets = sweep_targets(names, k.project) or [(m, []) for m in swept_by_default(k.project)]
    if not targets:
        raise KdkError(f"no module to sweep: {k.project} has no module folder (name one)")
    sweeps = []
    for folder, params in targets:
        try:
            kos = k.build(str(folder.path)).modules
        except KdkError as e:  # e.g. it needs a kernel option this kernel lacks
            first = next((ln for ln in e.details.splitlines() if "error:" in ln), "")
            error = first.partition("error:")[2].strip()
            why = f"it does not build for this kernel: {error}" if first else str(e)
            sweeps.append(Sweep(folder.name, notes=[f"not swept: {why}"]))
            print(table(sweeps[-1]), flush=True)
            continue
        chosen = [main_module(kos, folder.module, named=True)] if folder.module else kos
        for ko in chosen:
            name = ko.name.removesuffix(".ko")
            print(f"sweeping {name} ...", flush=True)
            try:
                sweep = k.loader.fault_inject(str(ko) if len(kos) > 1 else str(folder.path), params)
            except KernelCrash as e:  # the VM was booted again: the next module goes on
                sweep = Sweep(name, problems=[f"the kernel crashed: {e}"])
            except MissingDependency:  # no fault injection in this kernel: said once
                raise
            except KdkError as e:  # it does not load here (a device, a module it needs)
                sweep = Sweep(name, notes=[f"not swept: {e}"])
            print(table(sweep), flush=True)
            sweeps.append(sweep)
    print("kmemleak: scanning for what the failed loads leaked ...", flush=True)
    noted = [len(sweep.notes) for sweep in sweeps]
    if not k.loader.fault_leaks(sweeps):
        print("kmemleak: not checked, this kernel has none (kdk kernel build --debug has it)")
    for sweep, before in zip(sweeps, noted, strict=True):
        if any(p.startswith("leak:") for s in sweep.steps for p in s.problems):
            print(table(sweep))
        else:  # the kernel's own leaks, not counted against the module: said
            print("".join(f"{sweep.module}: {note}\n" for note in sweep.notes[before:]), end="")
    return sweeps
