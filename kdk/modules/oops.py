"""Kernel crash reports found in the guest's serial console log.

An Oops, BUG, WARNING, general protection fault, soft or hard lockup, or
panic is turned into a `Crash`: what kind it was, the function it happened
in and its module, and the top of the call trace. The parser reads the
console text as the kernel printed it (with or without timestamps).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?")
# One stack frame: "func+0x11/0x21 [module]" (the module is optional).
FRAME = re.compile(r"^\s*(\?\s+)?([\w.$]+)\+0x[0-9a-f]+/0x[0-9a-f]+(?:\s+\[(\w+)\])?")
STARTS = [
    (re.compile(r"BUG: soft lockup - (CPU#\d+ stuck for \d+s)"), "soft lockup"),
    (re.compile(r"[Hh]ard LOCKUP"), "hard lockup"),
    (re.compile(r"^kernel BUG at (\S+)!"), "kernel BUG"),
    (re.compile(r"^BUG: ([^,]+)"), "BUG"),
    (re.compile(r"^general protection fault"), "general protection fault"),
    (re.compile(r"^WARNING: CPU: \d+ PID: \d+ at (\S+)"), "WARNING"),
    (re.compile(r"^Oops: "), "Oops"),
]
PANIC = re.compile(r"^Kernel panic - not syncing: (.*)")
# Frames that are the reporting machinery, not the culprit.
MACHINERY = {"dump_stack_lvl", "dump_stack", "panic", "__warn", "report_bug", "handle_bug",
             "exc_invalid_op", "asm_exc_invalid_op", "show_stack", "watchdog_timer_fn"}  # fmt: skip
TOP_FRAMES = 5


@dataclass
class Crash:
    """One crash report."""

    kind: str  # "BUG: kernel NULL pointer dereference", "WARNING", "panic", ...
    headline: str  # the line that announced it
    function: str = ""  # where it happened, e.g. faulty_crash
    module: str = ""  # that function's module, "" for the kernel proper
    trace: list[str] = field(default_factory=list)  # top frames, "func [module]"
    panic: str = ""  # the panic message when the kernel died of it

    @property
    def fatal(self) -> bool:
        """Whether the kernel cannot be trusted afterwards (all but a warning)."""
        return not self.kind.startswith("WARNING") or bool(self.panic)

    def summary(self) -> str:
        where = f" in {self.function}" if self.function else ""
        mod = f" [{self.module}]" if self.module else ""
        return f"{self.kind}{where}{mod}"

    def format(self, console_log: Path | None = None) -> str:
        """The short block kdk prints for this crash."""
        lines = [f"kernel {'crash' if self.fatal else 'warning'}: {self.summary()}",
                 f"  {self.headline}"]  # fmt: skip
        if self.panic and self.kind != "panic":
            lines.append(f"  then: Kernel panic - not syncing: {self.panic}")
        if self.trace:
            lines.append("  call trace: " + " < ".join(self.trace))
        if console_log is not None:
            lines.append(f"  console log: {console_log}")
        return "\n".join(lines)


def _kind(line: str) -> tuple[str, str] | None:
    """(kind, detail) when `line` starts a report."""
    for pattern, kind in STARTS:
        m = pattern.search(line)
        if m:
            if kind == "BUG":
                return f"BUG: {m.group(1).strip()}", ""
            if kind in ("kernel BUG", "WARNING"):
                return f"{kind} at {m.group(1)}", ""
            return kind, ""
    return None


def _frame(text: str) -> tuple[str, str] | None:
    m = FRAME.match(text)
    if m is None or m.group(1):  # '?' frames are guesses from the stack
        return None
    return m.group(2), m.group(3) or ""


def parse(text: str) -> list[Crash]:
    """Every crash report in a console log, in order."""
    crashes: list[Crash] = []
    cur: Crash | None = None
    in_trace = False
    for raw in text.splitlines():
        line = TIMESTAMP.sub("", raw).rstrip()
        panic = PANIC.match(line)
        if panic:
            if cur is not None and not cur.panic:
                cur.panic = panic.group(1)
            else:
                cur = Crash("panic", line, panic=panic.group(1))
                crashes.append(cur)
            in_trace = False
            continue
        kind = _kind(line)
        if kind is not None:
            # "Oops:" and "invalid opcode" follow the BUG line of the same report
            if not (kind[0] == "Oops" and cur is not None and not cur.trace and not cur.panic):
                cur = Crash(kind[0], line)
                crashes.append(cur)
            in_trace = False
            continue
        if cur is None:
            continue
        if line.startswith("RIP: 0010:") and not cur.function:
            frame = _frame(line.removeprefix("RIP: 0010:"))
            if frame:
                cur.function, cur.module = frame
        elif line.startswith("Call Trace:"):
            in_trace = not cur.trace
        elif line.startswith("---[ end trace"):
            in_trace = False
        elif in_trace:
            frame = _frame(line)
            if frame and frame[0] not in MACHINERY and len(cur.trace) < TOP_FRAMES:
                cur.trace.append(f"{frame[0]} [{frame[1]}]" if frame[1] else frame[0])
                if not cur.function:
                    cur.function, cur.module = frame
    for crash in crashes:
        if not crash.module:  # blame the first module on the stack, if any
            crash.module = next((f.split("[")[1].rstrip("]") for f in crash.trace if "[" in f), "")
    return crashes
