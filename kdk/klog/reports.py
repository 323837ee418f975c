"""The reports of the kernel's own checks in the guest's console log.

A debug kernel (`kdk kernel build --debug`) checks what modules do and
says so on the console: KASAN (a bad memory access: use-after-free,
slab-out-of-bounds, double-free, ...), lockdep (a lock order that can
deadlock, a lock used in and out of interrupts, a lock still held when a
system call returns), DEBUG_ATOMIC_SLEEP (a function that may sleep
called where sleeping is not allowed), UBSAN (undefined behaviour: a
shift too far, an index out of bounds) and KCSAN (a data race: two
threads at the same memory at once, one of them writing, with no lock or
marked access; `kdk kernel build --kcsan`). The kernel goes on after each: a
`Report` is not a crash. Each names its check, its kind, the function it
happened in and that function's module (the first frame of a module on
its stack: the code under test, not the kernel's machinery), and what the
check adds: the access and the allocating and freeing stacks (KASAN), the
locks and where each was taken (lockdep), the source line (UBSAN, sleep),
the two racing accesses (KCSAN).

`split` tells these apart from the crashes of `oops.parse`, which sees a
KASAN report or a sleep in atomic context as a "BUG:" like any other.
`leaks` reads kmemleak's list (/sys/kernel/debug/kmemleak), which is not
on the console: one report per unreferenced object that a module allocated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from . import oops

KASAN = re.compile(r"^BUG: KASAN: (.+?) in (\S+\+0x[0-9a-f]+/0x[0-9a-f]+(?:\s+\[\w+\])?)$")
# "Write of size 1 at addr ffff888005d2b040 by task sh/204", "Free of addr ..."
KASAN_ACCESS = re.compile(r"^(Read|Write|Free) of (?:size (\d+) at )?addr \S+ by task (\S+)")
KASAN_STACK = re.compile(r"^(Allocated|Freed) by task \d+:")
SLEEP = re.compile(r"^BUG: (sleeping function called from invalid context) at (\S+)")
SCHEDULE = re.compile(r"^BUG: (scheduling while atomic): (\S+)")
UBSAN = re.compile(r"^UBSAN: (\S+) in (\S+?)(?::\d+)?$")
# "BUG: KCSAN: data-race in sync_race_inc [sync] / sync_race_inc [sync]"
# (the two functions, without offsets), or one "func+0x1f/0x40 [mod]" when
# the other side is unknown; then each access, "read-write to 0xffff... of
# 8 bytes by task 213 on cpu 1:" (or "race at unknown origin, with read to
# ...") and its stack.
KCSAN = re.compile(r"^BUG: KCSAN: (.+?) in (.+)$")
KCSAN_SIDE = re.compile(r"^([\w.$]+)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?(?:\s+\[(\w+)\])?$")
KCSAN_ACCESS = re.compile(
    r"^(?:race at unknown origin, with )?(.+?) to 0x[0-9a-f]+ of (\d+) bytes by (.+?) on cpu \d+:$"
)
# lockdep's title follows a row of "=": "WARNING: possible circular
# locking dependency detected", "WARNING: inconsistent lock state", ...
LOCKDEP = re.compile(r"^WARNING: (.+?)!?$")
RULE = re.compile(r"^=+$")
# "ffffffffa0003248 (sync_lock_a){+.+.}-{3:3}, at: sync_take_ba+0x25/0x40 [sync]";
# in a list of held locks "#0: " comes first
LOCK = re.compile(r"^\s*(#\d+: )?[0-9a-f]+ \((.+?)\)\{[^}]*\}-\{[\d:]+\}, at: (.+)$")
# "-> #1 (sync_lock_b){+.+.}-{3:3}:": a step of the dependency chain
CHAIN = re.compile(r"^-> #(\d+) \((.+?)\)\{")
# inconsistent lock state: "inconsistent {SOFTIRQ-ON-W} -> {IN-SOFTIRQ-W}
# usage.", then where the first use was, "{SOFTIRQ-ON-W} state was registered at:"
USAGE = re.compile(r"^inconsistent \{.+\} -> \{.+\} usage\.$")
REGISTERED = re.compile(r"^(\{[A-Z-]+\}) state was registered at:$")
# The checks' own frames and the functions that take locks or allocate:
# never the culprit when the kernel proper has to be blamed.
MACHINERY = re.compile(
    r"^_*(dump_stack|print_|kasan|asan|ubsan|lock_acquire|lock_|check_|might_|"
    r"raw_spin|spin_|mutex_|rwsem|down_|kmem_cache_|kmalloc|kfree|slab_|"
    r"stack_trace|kmemleak|save_stack|validate_chain|mark_lock)"
)
# kmemleak: "unreferenced object 0xffff888008fc1a80 (size 64):", then its
# allocation's stack, "    [<000000002f6d1b20>] faulty_leak+0x3a/0x60 [faulty]"
LEAK = re.compile(r"^unreferenced object (0x[0-9a-f]+) \(size (\d+)\):")
LEAK_FRAME = re.compile(r"^\s+\[<[0-9a-f]+>\] (.+)$")
TOP_FRAMES = 3


@dataclass
class Report:
    """One report of one of the kernel's checks."""

    check: str  # KASAN, lockdep, sleep in atomic, UBSAN
    kind: str  # use-after-free, possible circular locking dependency detected, ...
    headline: str  # the line that announced it
    function: str = ""  # where: the first function of a module on its stack
    module: str = ""
    where: str = ""  # the source line it names (UBSAN, sleep in atomic)
    detail: str = ""  # KASAN's access, UBSAN's explanation
    locks: list[str] = field(default_factory=list)  # lockdep: "lock (at func [mod])"
    chain: list[str] = field(default_factory=list)  # lockdep: "lock taken in func [mod]" before
    allocated: list[str] = field(default_factory=list)  # KASAN: top frames
    freed: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)  # top frames, "func [module]"
    accesses: list[str] = field(default_factory=list)  # KCSAN: "write of 8 bytes by task 3 at f"

    def summary(self) -> str:
        """ "KASAN: use-after-free in faulty_uaf [faulty]" """
        mod = f" [{self.module}]" if self.module else ""
        where = f" in {self.function}{mod}" if self.function else ""
        return f"{self.check}: {self.kind}{where}"

    def format(self, console_log: Path | None = None) -> str:
        """The short block kdk prints for this report."""
        lines = [f"kernel report: {self.summary()}"]
        lines += [f"  {line}" for line in (self.detail, self.where and f"at {self.where}") if line]
        if self.locks:
            lines.append("  locks: " + "; ".join(self.locks))
        lines += [f"  earlier: {step}" for step in self.chain]
        for label, frames in (("allocated by", self.allocated), ("freed by", self.freed)):
            if frames:
                lines.append(f"  {label}: " + " < ".join(frames))
        if self.trace:
            lines.append("  call trace: " + " < ".join(self.trace))
        lines += [f"  access: {access}" for access in self.accesses]
        if console_log is not None:
            lines.append(f"  console log: {console_log}")
        return "\n".join(lines)


def _start(line: str, previous: str) -> Report | None:
    """The report that `line` announces (after `previous`), if any."""
    m = KASAN.match(line)
    if m:
        report = Report("KASAN", m.group(1), line)
        frame = oops.parse_frame(m.group(2))
        if frame:
            report.function, report.module = oops.in_source(frame)
        return report
    m = SLEEP.match(line) or SCHEDULE.match(line)
    if m:
        return Report("sleep in atomic", m.group(1), line, where=m.group(2))
    m = UBSAN.match(line)
    if m:
        return Report("UBSAN", m.group(1), line, where=m.group(2))
    m = KCSAN.match(line)
    if m:
        report = Report("KCSAN", m.group(1), line)
        sides = [KCSAN_SIDE.match(side) for side in m.group(2).split(" / ")]
        named = [(f.group(1), f.group(2) or "") for f in sides if f is not None]
        mine = next((f for f in named if f[1]), named[0] if named else None)
        if mine is not None:
            report.function, report.module = oops.in_source(mine)
        return report
    m = LOCKDEP.match(line)
    if m and RULE.match(previous) and not line.startswith("WARNING: CPU:"):
        return Report("lockdep", m.group(1), line)
    return None


def _lock(m: re.Match[str]) -> str:
    return f"{m.group(2)} (at {oops.named(oops.parse_frame(m.group(3)))})"


def parse(text: str) -> list[Report]:
    """Every report of the kernel's checks in a console log, in order."""
    reports: list[Report] = []
    cur: Report | None = None
    part = ""  # the stack being read: trace, Allocated, Freed, chain, or "" for none
    culprit: list[str] = []  # the chain step's first frame of its own
    previous = ""
    for raw in text.splitlines():
        line = oops.TIMESTAMP.sub("", raw).rstrip()
        report = _start(line, previous)
        previous = line
        if report is not None:
            cur, part = report, ""
            reports.append(cur)
            continue
        if cur is None:
            continue
        if oops.report_start(line) is not None or oops.PANIC.match(line):
            cur = None  # a crash follows: not this report's
            continue
        frame = oops.parse_frame(line)
        if frame is not None and part:
            name = oops.named(frame)
            if part == "trace" and len(cur.trace) < TOP_FRAMES:
                if not MACHINERY.match(frame[0]) or frame[1]:
                    cur.trace.append(name)
            elif part in ("Allocated", "Freed"):
                frames = cur.allocated if part == "Allocated" else cur.freed
                if len(frames) < TOP_FRAMES and not MACHINERY.match(frame[0]):
                    frames.append(name)
            elif part == "chain" and not culprit and not MACHINERY.match(frame[0]):
                culprit.append(name)
                cur.chain[-1] += f" taken in {name}"
            elif part == "access" and cur.accesses[-1].count(" < ") < TOP_FRAMES - 1:
                cur.accesses[-1] += f" < {name}" if " at " in cur.accesses[-1] else f" at {name}"
            continue
        if line.strip().startswith(("? ", "<TASK>")):
            continue
        access = KASAN_ACCESS.match(line)
        lock = LOCK.match(line)
        stack = KASAN_STACK.match(line)
        chain = CHAIN.match(line)
        registered = REGISTERED.match(line)
        racing = KCSAN_ACCESS.match(line) if cur.check == "KCSAN" else None
        if racing:
            what, size, by = racing.groups()
            cur.accesses.append(f"{what} of {size} bytes by {by}")
            part = "access"
        elif cur.check == "KCSAN" and line.startswith("value changed: "):
            cur.detail = line
        elif access:
            size = f" of size {access.group(2)}" if access.group(2) else ""
            cur.detail = f"{access.group(1).lower()}{size} by task {access.group(3)}"
        elif USAGE.match(line) or (
            cur.check == "UBSAN" and not cur.detail and not line.startswith("CPU:")
        ):
            cur.detail = line.strip()
        elif lock and (not lock.group(1) or not cur.locks) and part != "trace":
            cur.locks.append(_lock(lock))
        elif stack:
            part = stack.group(1)
        elif chain and chain.group(1) != "0":
            cur.chain.append(chain.group(2))
            part, culprit = "chain", []
        elif registered:  # the earlier use, of the lock just named
            name = cur.locks[0].partition(" (at ")[0] if cur.locks else ""
            cur.chain.append(f"{name} {registered.group(1)}".lstrip())
            part, culprit = "chain", []
        elif line.startswith("Call Trace:") and not cur.trace:
            part = "trace"
        elif line.startswith("stack backtrace:"):
            part = ""
        elif not line.strip() or RULE.match(line) or line.startswith(("RIP:", "</TASK>")):
            part = "" if part != "trace" or line.startswith("</TASK>") else part
    for r in reports:
        if not r.function:  # the module's code on the stack, else the kernel's first
            # (no stack: a lock held into user space, where it was taken)
            takers = [lock.partition(" (at ")[2].rstrip(")") for lock in r.locks]
            frames = r.trace or takers
            first = next((f for f in frames if "[" in f), frames[0] if frames else "")
            func, _, mod = first.partition(" ")
            r.function, r.module = func, mod.strip("[]")
    return reports


def split(text: str) -> tuple[list[oops.Crash], list[Report]]:
    """The crashes in a console log (oops.parse's but for the reports) and
    the reports of the kernel's checks."""
    found = parse(text)
    headlines = {r.headline for r in found}
    return [c for c in oops.parse(text) if c.headline not in headlines], found


@dataclass
class Leak:
    """One object of kmemleak's list."""

    size: int
    address: str
    text: str  # its block: the headline, "comm ..., pid N, ...", the stack
    frames: list[str]  # its allocation's stack, "func+0x17/0x30 [mod]"


def leak_objects(text: str) -> list[Leak]:
    """The objects of kmemleak's list `text`."""
    found = []
    for block in re.split(r"(?m)^(?=unreferenced object )", text):
        m = LEAK.match(block)
        if m is not None:
            frames = [f.group(1) for f in map(LEAK_FRAME.match, block.splitlines()) if f]
            found.append(Leak(int(m.group(2)), m.group(1), block, frames))
    return found


def leaks(text: str, modules: set[str]) -> list[Report]:
    """The objects of kmemleak's list `text` whose allocating stack runs
    through one of `modules`, as reports naming the module's function."""
    found: list[Report] = []
    for leak in leak_objects(text):
        named = [f for f in map(oops.parse_frame, leak.frames) if f is not None]
        mine = next((f for f in named if f[1] in modules), None)
        if mine is None:
            continue
        report = Report("kmemleak", "unreferenced object", leak.text.splitlines()[0])
        report.function, report.module = oops.in_source(mine)
        report.detail = f"{leak.size} bytes at {leak.address}"
        start = named.index(mine)
        report.allocated = [oops.named(f) for f in named[start : start + TOP_FRAMES]]
        found.append(report)
    return found
