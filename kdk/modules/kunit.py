"""KUnit suites in module folders, run in the guest.

A module whose C defines `kunit_test_suite(...)` is a KUnit test module:
on a kernel with KUnit, loading it runs its suites (the kernel does so as
the module goes live, before insmod returns) and prints their KTAP to the
kernel log, which is read here from the load's own log lines
(kdk.klog.ktap). The module is unloaded again afterwards. Such a module is
usually built only for a kernel with KUnit (`ifdef CONFIG_KUNIT` in its
Kbuild), so the rest of its folder builds everywhere.

The suites and cases a source defines are also read from the C itself,
so that a test runner knows them before anything runs (and names the
cases a crashed run never reached).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import MissingDependency
from ..kernel import Kernel, module_name
from ..klog import ktap
from ..project import ModuleSource
from .loader import Loader

SUITES_MACRO = re.compile(r"^\s*kunit_test_suites?\s*\(", re.M)
CASES = re.compile(r"struct\s+kunit_case\s+(\w+)\s*\[\s*\]\s*=\s*\{(.*?)\};", re.S)
CASE = re.compile(r"\bKUNIT_CASE\w*\(\s*(\w+)")
SUITE = re.compile(r"struct\s+kunit_suite\s+\w+\s*=\s*\{(.*?)\};", re.S)
SUITE_NAME = re.compile(r'\.name\s*=\s*"([^"]+)"')
SUITE_CASES = re.compile(r"\.test_cases\s*=\s*(\w+)")
DISABLED = "kunit: disabled"  # a load's line when the kernel runs no suites


@dataclass(frozen=True)
class Suite:
    """A suite as its C source defines it."""

    name: str
    cases: tuple[str, ...]


@dataclass(frozen=True)
class Run:
    """One load of a KUnit test module: what the kernel printed, read."""

    module: str
    printed: list[str]  # the KTAP lines of the load's kernel log, as printed
    suites: list[ktap.Test]  # the suites that ran, with their cases

    def suite(self, name: str) -> ktap.Test | None:
        return next((s for s in self.suites if s.name == name), None)


def defines_suites(c_file: Path) -> bool:
    """Whether a C file registers KUnit suites."""
    try:
        return SUITES_MACRO.search(c_file.read_text(errors="replace")) is not None
    except OSError:
        return False


def suites(c_file: Path) -> list[Suite]:
    """The suites a C file defines, with their cases, in source order."""
    text = re.sub(r"/\*.*?\*/|//[^\n]*", "", c_file.read_text(errors="replace"), flags=re.S)
    arrays = {m.group(1): tuple(CASE.findall(m.group(2))) for m in CASES.finditer(text)}
    found = []
    for m in SUITE.finditer(text):
        name, cases = SUITE_NAME.search(m.group(1)), SUITE_CASES.search(m.group(1))
        if name and cases:
            found.append(Suite(name.group(1), arrays.get(cases.group(1), ())))
    return found


def test_sources(src: ModuleSource) -> list[Path]:
    """The C files of a module folder that define KUnit suites."""
    return [c for c in sorted(src.path.glob("*.c")) if defines_suites(c)]


def module_of(c_file: Path) -> str:
    """The module a KUnit source is built into: the folder's module of the
    same name, else the one whose `<module>-y`/`-objs` list names it."""
    src = ModuleSource(c_file.parent.name, c_file.parent)
    stem = c_file.stem
    names = src.module_names()
    if stem in names:
        return stem
    kbuild = "".join(
        (src.path / f).read_text(errors="replace")
        for f in ("Kbuild", "Makefile")
        if (src.path / f).exists()
    ).replace("\\\n", " ")
    for m in re.finditer(r"^\s*([\w-]+)-(?:y|objs|m)\s*[:+]?=(.*)$", kbuild, re.M):
        if f"{stem}.o" in m.group(2).split() and m.group(1) in names:
            return m.group(1)
    return stem


def unavailable(kernel: Kernel) -> str | None:
    """Why `kernel` cannot run KUnit suites, in one line; None when it can."""
    if kernel.enabled("CONFIG_KUNIT"):
        return None
    if not kernel.config.exists():
        return f"kernel {kernel.release} has no config file ({kernel.config}) saying it has KUnit"
    return (
        f"kernel {kernel.release} has no KUnit (CONFIG_KUNIT is not set in {kernel.config}); "
        "`kdk up --kernel debug` boots one that has"
    )


def run(loader: Loader, spec: str) -> Run:
    """Load the KUnit test module `spec` (a module name, or FOLDER/MODULE)
    in the running guest, read the KTAP its suites printed, unload it."""
    kernel = loader.target_kernel()
    reason = unavailable(kernel)
    if reason:
        raise MissingDependency(reason)
    res = loader.load(spec)
    loader.unload(spec)
    lines = [line for r in res.log for line in r.text.splitlines()]  # a record may hold several
    if any(line.strip() == DISABLED for line in lines):
        raise MissingDependency(
            f"KUnit is disabled in the guest ({DISABLED!r} when {module_name(res.name)} loaded): "
            "boot it again with kunit.enable=1 (`kdk down; kdk up`: kdk adds it)"
        )
    return Run(res.name, ktap.ktap_lines(lines), ktap.parse(lines))
