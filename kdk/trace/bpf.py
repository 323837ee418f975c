"""eBPF experiments in the guest with bcc, results back as Python objects.

A BPF C program lives in its own .c file; a few lines of Python say where
to attach it and read its tables:

    from kdk.api import Kdk
    from kdk.trace.bpf import Probes

    k = Kdk()
    probes = Probes(kprobes={"kdkchar_write": "on_write"})
    with k.bpf(Path("experiments/kdkchar_sizes.c"), probes) as prog:
        k.exec("echo hi > /dev/kdkchar0")
        sizes = prog.tables()["sizes"]      # [(key, value), ...]

bcc compiles the program in the guest, against the guest kernel's headers
(the guest runs the host's root, so these are the host's headers package),
attaches every probe it can, and reports the ones it could not. It does so
in a server that stays up in the guest (kdk/inguest/bpf_runner.py, started
by the first program of a boot): bcc is imported once per boot, and a
program whose text and cflags were compiled before is reused, not compiled
again. Each program talks to it over its own SSH channel, relayed by `nc -U`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import inguest
from ..errors import KdkError, MissingDependency
from ..session import Session

if TYPE_CHECKING:
    from ..guest.ssh import Starter

RUNNER = inguest.path("bpf_runner.py")
ATTACH_TIMEOUT = 180.0  # a cold compile under TCG takes seconds; a stuck one is an error
BCC_PACKAGES = "bpfcc-tools and python3-bpfcc"
NC_PACKAGE = "netcat-openbsd"


@dataclass(frozen=True)
class Probes:
    """Where the program's functions attach: {kernel function: BPF function},
    and {"category:event": BPF function} for tracepoints."""

    kprobes: dict[str, str] = field(default_factory=dict)
    kretprobes: dict[str, str] = field(default_factory=dict)
    tracepoints: dict[str, str] = field(default_factory=dict)


def log2_bucket(slot: int) -> tuple[int, int]:
    """The value range [low, high] of a BPF log2 histogram slot."""
    return (0, 0) if slot == 0 else (1 << (slot - 1), (1 << slot) - 1)


def histogram_text(counts: dict[int, int], unit: str, width: int = 30) -> str:
    """A log2 histogram as text, in the layout bcc's tools print."""
    if not counts:
        return "     (no events)"
    top = max(counts.values()) or 1
    digits = max(10, len(str(log2_bucket(max(counts))[1])))
    lines = [f"{unit:>{digits * 2 + 4}} : count     distribution"]
    for slot in range(min(counts), max(counts) + 1):
        low, high = log2_bucket(slot)
        n = counts.get(slot, 0)
        bar = "*" * round(n * width / top)
        lines.append(f"{low:>{digits}} -> {high:<{digits}} : {n:<9} |{bar:<{width}}|")
    return "\n".join(lines)


# The BPF_* map declarations of bcc's C dialect: BPF_HASH(name, ...) etc.
MAP_DECL = re.compile(
    r"^\s*BPF_(?:HASH|ARRAY|HISTOGRAM|PERCPU_ARRAY|PERCPU_HASH|LRU_HASH)"
    r"\(\s*(\w+)",
    re.M,
)


# Any map declaration, those above and others (BPF_PERF_OUTPUT(name), ...).
ANY_MAP = re.compile(r"^\s*BPF_[A-Z_]+\(", re.M)


def table_names(text: str) -> list[str]:
    """The tables a BPF program declares, in order."""
    return MAP_DECL.findall(text)


def clearable(text: str) -> list[str] | None:
    """Every map of a BPF program when all can be emptied (hashes and
    arrays), so that the guest can keep it compiled for reuse; else None."""
    names = table_names(text)
    return names if len(names) == len(ANY_MAP.findall(text)) else None


class Program:
    """A BPF program compiled and attached in the guest."""

    def __init__(
        self,
        start: Starter,
        text: str,
        probes: Probes,
        cflags: list[str],
        tables: list[str] | None = None,
    ) -> None:
        job = {
            "text": text,
            "cflags": cflags,
            "kprobes": list(probes.kprobes.items()),
            "kretprobes": list(probes.kretprobes.items()),
            "tracepoints": list(probes.tracepoints.items()),
            "tables": table_names(text) if tables is None else tables,
            "clear": clearable(text),
        }
        started = time.monotonic()
        self._runner = start(
            ["sh", "-c", inguest.relay("bpf", "python3 -u", RUNNER.read_text())],
            "the BPF program in the guest",
        )
        answer = self._runner.ask(job, ATTACH_TIMEOUT)
        if "error" in answer:
            self._runner.close()
            raise _job_error(answer["error"], answer["detail"], answer.get("stderr", ""))
        self.attached: list[str] = answer["attached"]
        self.skipped: list[tuple[str, str]] = [(e, r) for e, r in answer["skipped"]]
        self.compile_seconds = float(answer["seconds"])  # as the guest measured it
        self.attach_seconds = time.monotonic() - started  # from the host's request
        self.reused = bool(answer["reused"])  # the compiled program of an earlier job
        # where the time went: the server's phases, and before them the SSH
        # channel, the relay and, first in a boot, the server's start
        in_guest = [(str(phase), float(t)) for phase, t in answer["times"]]
        self.times = [("ssh, relay, server start", self.attach_seconds - self.compile_seconds)]
        self.times += in_guest

    def tables(self) -> dict[str, list[tuple[Any, Any]]]:
        """Every BPF table of the program: {name: [(key, value), ...]}, with
        structs as dicts and char arrays as strings."""
        return _tables(self._runner.ask("tables", 60.0))

    def stop(self) -> dict[str, list[tuple[Any, Any]]]:
        """The tables one last time; then the probes are detached."""
        try:
            return _tables(self._runner.ask("stop", 60.0))
        finally:
            self.close()

    def close(self) -> None:
        """Detach the probes (the guest program ends when its input does)."""
        self._runner.close()


def _tables(answer: dict[str, Any]) -> dict[str, list[tuple[Any, Any]]]:
    return {name: [(k, v) for k, v in items] for name, items in answer["tables"].items()}


def _job_error(kind: str, detail: str, stderr: str) -> KdkError:
    if kind == "nc":
        return MissingDependency(f"{detail}: install the Debian package {NC_PACKAGE} on the host")
    if kind == "bcc":
        return MissingDependency(
            f"bcc is not installed in the guest ({detail}): install the "
            f"Debian packages {BCC_PACKAGES} on the host"
        )
    if kind == "headers":
        release = detail.split("/")[3] if detail.count("/") > 3 else "the guest kernel"
        return MissingDependency(
            f"kernel headers missing in the guest ({detail}): "
            f"install linux-headers-{release} on the host"
        )
    return KdkError(f"the BPF program does not compile in the guest ({detail})", stderr)


@contextmanager
def attached(
    session: Session, program: Path | str, probes: Probes, cflags: Sequence[str] = ()
) -> Iterator[Program]:
    """A BPF program (a .c file, or its text) compiled with bcc in the
    session's guest and attached; detached at the end."""
    text = program.read_text() if isinstance(program, Path) else program
    rec = session.backend.require()
    with session.watched(rec):
        prog = Program(session.starter(rec), text, probes, list(cflags))
        try:
            yield prog
        finally:
            prog.close()
