"""`kdk trace`: calls and latency of every function of a loaded module.

The functions come from the guest's /proc/kallsyms; one BPF program
(kdk/trace.c, compiled once by bcc in the guest) gets a kprobe and a
kretprobe on each, and its tables are read back as a `TraceResult`.
"""

from __future__ import annotations

import re
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KdkError, UnknownModule
from ..project import find_module
from ..session import Session
from .bpf import Probes, Program

TEMPLATE = Path(__file__).with_name("trace.c")
# Aliases the kernel gives a module's init/exit functions; the real names
# stand at the same address.
ALIASES = {"init_module", "cleanup_module"}
LIST_TIMEOUT = 60.0  # seconds for the module's functions to be listed


@dataclass
class FunctionStats:
    """One traced function."""

    name: str
    calls: int = 0
    total_ns: int = 0
    hist: dict[int, int] = field(default_factory=dict)  # log2(ns) slot -> count

    @property
    def avg_ns(self) -> float:
        return self.total_ns / self.calls if self.calls else 0.0


@dataclass
class TraceResult:
    """What a trace saw."""

    module: str
    functions: list[FunctionStats]
    skipped: list[tuple[str, str]]  # (function, why it is not traced)
    attach_seconds: float  # from the request to every probe attached

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        for f, stats in zip(out["functions"], self.functions, strict=True):
            f["avg_ns"] = round(stats.avg_ns, 1)
            f["hist"] = {str(k): v for k, v in sorted(stats.hist.items())}
        out["skipped"] = [{"function": n, "reason": r} for n, r in self.skipped]
        return out


def module_functions(kallsyms: str, module: str) -> tuple[list[str], list[tuple[str, str]]]:
    """The text symbols of `module` in a /proc/kallsyms dump: (functions to
    trace, [(symbol, why not)]), one name per address."""
    by_addr: dict[str, list[str]] = {}
    skipped = []
    for line in kallsyms.splitlines():
        parts = line.split()
        if len(parts) != 4 or parts[3] != f"[{module}]" or parts[1] not in "tT":
            continue
        addr, name = parts[0], parts[2]
        if "." in name:
            skipped.append((name, "a compiler-split part of a function, not its entry"))
            continue
        by_addr.setdefault(addr, []).append(name)
    functions = []
    for names in by_addr.values():
        real = [n for n in names if n not in ALIASES] or names
        functions.append(real[0])
    return sorted(functions), skipped


def _reason(error: str) -> str:
    """bcc's attach error without its preamble naming our BPF function."""
    return re.sub(r"^Failed to attach BPF program b'\w+' to k(ret)?probe b'[\w.]+', ", "", error)


def program_text(count: int) -> str:
    """trace.c with one PROBE line per function."""
    return TEMPLATE.read_text() + "".join(f"PROBE({i})\n" for i in range(count))


class Trace:
    """A running trace; `snapshot()` reads what it has seen so far."""

    def __init__(
        self, prog: Program, module: str, functions: list[str], skipped: list[tuple[str, str]]
    ) -> None:
        self.prog = prog
        self.module = module
        self.functions = functions
        # where the time to attach went (kdk trace -v): the program's phases,
        # after those of trace() before it
        self.times: list[tuple[str, float]] = list(prog.times)
        by_probe = {p: _reason(r) for p, r in prog.skipped}
        self.skipped = skipped + [
            (f, by_probe.get(f"p:{f}") or by_probe[f"r:{f}"])
            for f in functions
            if f"p:{f}" in by_probe or f"r:{f}" in by_probe
        ]

    def snapshot(self, final: bool = False) -> TraceResult:
        tables = self.prog.stop() if final else self.prog.tables()
        stats = [FunctionStats(name) for name in self.functions]
        for fn, value in tables.get("stats", []):
            stats[fn].calls, stats[fn].total_ns = value["calls"], value["ns"]
        for key, count in tables.get("latency", []):
            stats[key["fn"]].hist[key["slot"]] = count
        traced = [s for s in stats if s.name not in {n for n, _ in self.skipped}]
        return TraceResult(self.module, traced, self.skipped, self.prog.attach_seconds)


@contextmanager
def trace(session: Session, module: str, project: Path) -> Iterator[Trace]:
    """Trace every function of a loaded module until the block ends (a
    module of `project`'s not loaded yet is told to be loaded first)."""
    started = time.monotonic()
    rec = session.backend.require()
    with session.watched(rec):
        pattern = shlex.quote(f"\\[{module}\\]$")
        found = session.capture(
            rec,
            # GNU grep by its path (busybox's applet takes ~1 s more under TCG)
            f"/bin/grep {pattern} /proc/kallsyms; test -d {shlex.quote('/sys/module/' + module)}",
            LIST_TIMEOUT,
        )
        listed = time.monotonic()
        kallsyms = found.stdout.decode(errors="replace")
        functions, skipped = module_functions(kallsyms, module)
        if not functions:
            raise _not_loaded(session, module, project, loaded=found.ok)
        probes = Probes(
            kprobes={f: f"enter_{i}" for i, f in enumerate(functions)},
            kretprobes={f: f"leave_{i}" for i, f in enumerate(functions)},
        )
        prog = Program(
            session.starter(rec),
            program_text(len(functions)),
            probes,
            [f"-DNFUNCS={len(functions)}"],
            tables=["stats", "latency"],
        )
        t = Trace(prog, module, functions, skipped)
        t.times.insert(0, ("the module's functions (kallsyms)", listed - started))
        try:
            yield t
        finally:
            prog.close()


def _not_loaded(session: Session, module: str, project: Path, loaded: bool) -> KdkError:
    if loaded:
        return KdkError(f"{module} is loaded but has no functions to trace (built in?)")
    try:
        find_module(module, project)
    except UnknownModule:
        with session.guest() as g:
            if not g.run(["modinfo", "-F", "name", module]).ok:
                return UnknownModule(
                    f"no such module {module!r} (not loaded, not known to kdk "
                    "nor to the guest kernel)"
                )
    return KdkError(f"{module} is not loaded: run `kdk load {module}` first")


def format_result(result: TraceResult, hist: bool = False) -> str:
    """The table `kdk trace` prints (80 columns), and histograms with `hist`."""
    from .bpf import histogram_text

    width = max([len(f.name) for f in result.functions] + [8])
    lines = [f"{'FUNCTION':<{width}} {'CALLS':>9} {'TOTAL us':>12} {'AVG us':>10}"]
    for f in sorted(result.functions, key=lambda f: (-f.calls, f.name)):
        lines.append(
            f"{f.name:<{width}} {f.calls:>9} {f.total_ns / 1000:>12.1f} {f.avg_ns / 1000:>10.2f}"
        )
    for name, why in result.skipped:
        lines.append(f"skipped {name}: {why}")
    if hist:
        for f in result.functions:
            if f.hist:
                lines += ["", f"{f.name}:", histogram_text(f.hist, "nsecs")]
    return "\n".join(lines)
