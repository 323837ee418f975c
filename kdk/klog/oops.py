"""Kernel crash reports found in the guest's serial console log.

An Oops, BUG, WARNING, general protection fault, soft or hard lockup, or
panic is turned into a `Crash`: what kind it was, the function it happened
in and its module, and the top of the call trace. The parser reads the
console text as the kernel printed it (with or without timestamps).

Memory errors are crashes too: SLUB's debug checks (`slub_debug`, which
`kdk up --debug` turns on) print "BUG <cache> (Tainted: ...): Poison
overwritten", "... Redzone overwritten", "... Object already free" and the
functions that allocated and freed the object; KFENCE and KASAN print
"BUG: KFENCE: use-after-free write in func+0x../0x.. [module]". The
kernel goes on after these (SLUB repairs what it found). The session
takes KASAN's, lockdep's, UBSAN's and a sleep in atomic context's reports
as reports of the kernel's checks, not crashes (see kdk.klog.reports).
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
# SLUB's own report: "BUG kmalloc-64 (Not tainted): Redzone overwritten".
SLAB_BUG = re.compile(r"^BUG (\S+) \((?:Not tainted|Tainted: [^)]*)\): (.+)")
# Linux 6.12 names what was overwritten on a line of its own, before a BUG
# line that says only "Object corrupt", and adds a WARNING with the trace.
SLAB_DETAIL = re.compile(r"^\[([\w ]+ overwritten)\] 0x[0-9a-f]+-0x[0-9a-f]+ @offset=")
SLAB_WARNING = "WARNING at mm/slub.c"
# KFENCE's report: the access's stack, "kfence-#N: ..., cache=NAME", then
# "allocated by task N ..." and "freed by task N ..." with their stacks.
KFENCE_OBJECT = re.compile(r"^kfence-#\d+: .*\bcache=(\S+)")
KFENCE_STACK = re.compile(r"^(allocated|freed) by task \d+")
# Who allocated and freed that object: "Allocated in func+0x17/0x30 [mod] age=..".
SLAB_TRACK = re.compile(r"^(Allocated|Freed) in ([\w.$]+\+0x[0-9a-f]+/0x[0-9a-f]+(?:\s+\[\w+\])?)")
# "KFENCE: use-after-free write in func+0x../0x.. [mod]", after "BUG: ".
BUG_IN = re.compile(r"^(.*?) in ([\w.$]+\+0x[0-9a-f]+/0x[0-9a-f]+(?:\s+\[\w+\])?)$")
# gcc's names for parts of a function: faulty_uaf.cold, f.isra.0, f.constprop.0
PART = re.compile(r"(\.(cold|part|isra|constprop|lto_priv)(\.\d+)?)+$")
# Frames that are the reporting machinery, not the culprit.
MACHINERY = {
    "dump_stack_lvl",
    "dump_stack",
    "panic",
    "__warn",
    "report_bug",
    "handle_bug",
    "exc_invalid_op",
    "asm_exc_invalid_op",
    "show_stack",
    "watchdog_timer_fn",
}
# SLUB's checking and freeing, above the code that freed or checked.
SLAB_MACHINERY = {
    "check_bytes_and_report",
    "check_object",
    "object_err",
    "slab_err",
    "print_trailer",
    "on_freelist",
    "free_debug_processing",
    "free_to_partial_list",
    "__slab_free",
    "kmem_cache_free",
    "kfree",
    "__free_slab",
    "free_slab",
    "discard_slab",
    "__kmem_cache_do_shrink",
    "kmem_cache_shrink",
    "free_partial",
    "__kmem_cache_shutdown",
    "kmem_cache_destroy",
    "alloc_debug_processing",
    "___slab_alloc",
    "__slab_alloc",
    "kmem_cache_alloc",
    "__kmalloc",
    "kmalloc_trace",
    "validate_slab",
    "validate_slab_cache",
    "validate_store",
}
TOP_FRAMES = 5


@dataclass
class Crash:
    """One crash report."""

    kind: str  # "BUG: kernel NULL pointer dereference", "WARNING", "panic", ...
    headline: str  # the line that announced it
    function: str = ""  # where it happened, e.g. faulty_crash
    module: str = ""  # that function's module, else the first module on the stack
    caller: str = ""  # for a function of the kernel proper, that module's frame
    trace: list[str] = field(default_factory=list)  # top frames, "func [module]"
    panic: str = ""  # the panic message when the kernel died of it
    cache: str = ""  # a SLUB report's slab cache, e.g. kmalloc-64
    allocated: str = ""  # a SLUB report's allocating function, "func [module]"
    freed: str = ""  # and the one that freed the object last

    @property
    def memory(self) -> bool:
        """A memory error that the kernel found and survived (SLUB, KFENCE, KASAN)."""
        return bool(self.cache) or self.kind.startswith(("BUG: KFENCE:", "BUG: KASAN:"))

    @property
    def fatal(self) -> bool:
        """Whether the kernel cannot be trusted afterwards (all but a
        warning or a memory error it found and survived)."""
        return not (self.kind.startswith("WARNING") or self.memory) or bool(self.panic)

    @property
    def what(self) -> str:
        """What the kernel did, for a sentence: crashed, warned, ..."""
        if self.fatal:
            return "crashed"
        return "reported a memory error" if self.memory else "warned"

    def summary(self) -> str:
        where = f" in {self.function}" if self.function else ""
        if self.caller:
            return f"{self.kind}{where}, called from {self.caller}"
        mod = f" [{self.module}]" if self.module else ""
        return f"{self.kind}{where}{mod}"

    def format(self, console_log: Path | None = None) -> str:
        """The short block kdk prints for this crash."""
        title = {"crashed": "crash", "warned": "warning"}.get(self.what, "memory error")
        lines = [f"kernel {title}: {self.summary()}", f"  {self.headline}"]
        lines += [
            f"  {label}: {who}"
            for label, who in (("allocated by", self.allocated), ("freed by", self.freed))
            if who
        ]
        if self.panic and self.kind != "panic":
            lines.append(f"  then: Kernel panic - not syncing: {self.panic}")
        if self.trace:
            lines.append("  call trace: " + " < ".join(self.trace))
        if console_log is not None:
            lines.append(f"  console log: {console_log}")
        return "\n".join(lines)


def report_start(line: str) -> tuple[str, str] | None:
    """(kind, detail) when `line` starts a report; the detail of a SLUB
    report is its cache, that of "BUG: ... in func" the function."""
    slab = SLAB_BUG.match(line)
    if slab:
        return slab.group(2).strip(), slab.group(1)
    for pattern, kind in STARTS:
        m = pattern.search(line)
        if m:
            if kind == "BUG":
                what = m.group(1).strip()
                where = BUG_IN.match(line.removeprefix("BUG: "))
                if where:
                    return f"BUG: {where.group(1)}", where.group(2)
                return f"BUG: {what}", ""
            if kind in ("kernel BUG", "WARNING"):
                return f"{kind} at {m.group(1)}", ""
            return kind, ""
    return None


def parse_frame(text: str) -> tuple[str, str] | None:
    m = FRAME.match(text)
    if m is None or m.group(1):  # '?' frames are guesses from the stack
        return None
    return m.group(2), m.group(3) or ""


def in_source(frame: tuple[str, str]) -> tuple[str, str]:
    """A frame's function as written in C: faulty_uaf.cold -> faulty_uaf."""
    return PART.sub("", frame[0]), frame[1]


def named(frame: tuple[str, str] | None) -> str:
    """ "func [module]", or "func" for the kernel proper."""
    if frame is None:
        return ""
    func, mod = in_source(frame)
    return f"{func} [{mod}]" if mod else func


def _kfence_line(crash: Crash, line: str, part: str) -> str:
    """Take one line of a KFENCE report into `crash`; the part that the next
    line belongs to ("" once the report's stacks are over)."""
    stack = KFENCE_STACK.match(line)
    obj = KFENCE_OBJECT.match(line)
    frame = parse_frame(line)
    if stack:
        return stack.group(1)
    if obj:
        crash.cache = obj.group(1)
    elif line.startswith("CPU:"):
        return ""
    elif frame and in_source(frame)[0] not in SLAB_MACHINERY:
        if part == "access" and len(crash.trace) < TOP_FRAMES:
            crash.trace.append(f"{frame[0]} [{frame[1]}]" if frame[1] else frame[0])
        elif part == "allocated" and not crash.allocated:
            crash.allocated = named(frame)
        elif part == "freed" and not crash.freed:
            crash.freed = named(frame)
    return part


def parse(text: str) -> list[Crash]:
    """Every crash report in a console log, in order."""
    crashes: list[Crash] = []
    cur: Crash | None = None
    in_trace = False
    overwritten = ""  # 6.12's line before its "Object corrupt"
    kfence = ""  # the part of a KFENCE report being read: access, allocated, freed
    for raw in text.splitlines():
        line = TIMESTAMP.sub("", raw).rstrip()
        detail = SLAB_DETAIL.match(line)
        if detail:
            overwritten = detail.group(1)
            continue
        panic = PANIC.match(line)
        if panic:
            if cur is not None and not cur.panic:
                cur.panic = panic.group(1)
            else:
                cur = Crash("panic", line, panic=panic.group(1))
                crashes.append(cur)
            in_trace = False
            continue
        kind = report_start(line)
        if kind is not None:
            # "Oops:" and "invalid opcode" follow the BUG line of the same
            # report, as 6.12's WARNING follows its SLUB report
            same = (
                cur is not None
                and not cur.trace
                and not cur.panic
                and (kind[0] == "Oops" or (bool(cur.cache) and kind[0].startswith(SLAB_WARNING)))
            )
            if not same:
                cur = Crash(kind[0], line)
                crashes.append(cur)
                if SLAB_BUG.match(line):
                    cur.cache = kind[1]
                    if overwritten and cur.kind == "Object corrupt":
                        cur.kind = overwritten
                elif kind[1]:
                    frame = parse_frame(kind[1])
                    if frame:
                        cur.function, cur.module = in_source(frame)
                kfence = "access" if cur.kind.startswith("BUG: KFENCE:") else ""
            overwritten = ""
            in_trace = False
            continue
        if cur is None:
            continue
        if kfence:
            kfence = _kfence_line(cur, line, kfence)
            continue
        track = SLAB_TRACK.match(line) if cur.cache else None
        if track:
            name = named(parse_frame(track.group(2)))
            if track.group(1) == "Allocated":
                cur.allocated = name
            else:
                cur.freed = name
        elif line.startswith("RIP: 0010:") and not cur.function and not cur.cache:
            frame = parse_frame(line.removeprefix("RIP: 0010:"))
            if frame:
                cur.function, cur.module = frame
        elif line.startswith("Call Trace:"):
            in_trace = not cur.trace
        elif line.startswith("---[ end trace"):
            in_trace = False
        elif in_trace:
            frame = parse_frame(line)
            skip = MACHINERY | SLAB_MACHINERY if cur.cache else MACHINERY
            if frame and in_source(frame)[0] not in skip and len(cur.trace) < TOP_FRAMES:
                cur.trace.append(f"{frame[0]} [{frame[1]}]" if frame[1] else frame[0])
                if not cur.function:
                    cur.function, cur.module = in_source(frame)
    for crash in crashes:
        if not crash.module:  # blame the first module on the stack, if any
            func, _, mod = next((f for f in crash.trace if "[" in f), "").partition(" ")
            crash.module = mod.strip("[]")
            if mod and crash.function:
                crash.caller = f"{PART.sub('', func)} {mod}"
    return crashes
