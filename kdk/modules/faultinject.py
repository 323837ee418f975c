"""Every init's error path, run for real: `kdk load --fail-nth N` and
`kdk test --fault-inject`.

The kernel's own fault injection (failslab, debug kernels; page
allocations are not counted: see fail_nth.py) fails the N-th slab
allocation of the loading task, counted by its
fail-nth file from the load's system call on (kdk/inguest/fail_nth.py
runs the loads in the guest, each one a process of kdk/inguest/fail_nth.c).
N is given from the first point of the module's init: the loader's own
points before it are found and skipped in the guest. A sweep fails N = 1,
2, ... until the load succeeds, and checks each step: the load failed with
an errno (not a crash), the kernel's checks reported nothing (KASAN,
lockdep, UBSAN, sleep in atomic: in that step's kernel log), nothing
leaked (kmemleak, once after every sweep: its objects carry the pid of the
load that allocated them, one process per step), and the module loads and
unloads cleanly at the end (the sweep's last load, then rmmod).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .. import inguest
from ..errors import BuildFailed, MissingDependency
from ..klog import kmsg, oops, reports
from ..make import static_program
from .errnos import REFUSED, errno_text
from .loading import kernel_param

PROGRAM = "fail_nth.c"  # built on the host (static), run in the guest
CAP = 1000  # most points of one init a sweep fails (kdknet has more than 200)
STEP_TIMEOUT = 60.0  # s one load may take in the guest
SCRIPT_TIMEOUT = 1800.0  # s a module's whole sweep may take (each load ~0.3-2 s under TCG)
FAILSLAB = "/sys/kernel/debug/failslab"
NO_FAULT_INJECTION = "kdk-no-fault-injection"
KMEMLEAK_MIN_AGE = 5.0  # s: kmemleak reports no younger object
# The frames of the fault's own machinery and of the allocators: the site
# of a fault is the first frame below them.
ALLOCATOR = re.compile(
    r"^_*(dump_stack|fail_dump|should_fail|slab_|kmem_cache_|kmalloc|kmem_|kzalloc|kcalloc|"
    r"kvmalloc|kvzalloc|kmemdup|kstrdup|krealloc|alloc_pages|folio_alloc|prepare_alloc|"
    r"alloc_vmap|get_vm_area|vmalloc|vzalloc|kasan|memcg|obj_cgroup|\w*alloc_node)"
)
SILENT = "(no stack: __GFP_NOWARN)"  # the site of a fault that printed nothing
PID = re.compile(r'^\s*comm "[^"]*", pid (\d+),', re.M)


@dataclass
class Step:
    """One load with its N-th point made to fail."""

    n: int  # counted from the init's first point (<= 0: the loader's, before it)
    pid: int  # the loading process (kmemleak names it)
    errno: int  # the load's errno, 0 when it succeeded
    injected: bool  # whether the load reached its N-th point (and it failed)
    site: str = ""  # where the failed allocation was asked for
    problems: list[str] = field(default_factory=list)  # why this step failed

    def outcome(self) -> str:
        if self.errno:
            return errno_text(self.errno)
        return "loaded" if not self.injected else "loaded (tolerated)"


@dataclass
class Sweep:
    """A module's fault-injection sweep (or its one load of --fail-nth)."""

    module: str
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was not swept, and why
    problems: list[str] = field(default_factory=list)  # failures not of one step
    init_at: int = 0  # the load's point where the init starts

    @property
    def failed(self) -> bool:
        return bool(self.problems) or any(s.problems for s in self.steps)


def program(cache: Path) -> Path:
    """fail_nth.c built for the guest (static: the guest runs it as it is),
    in `cache` (kdk's fault-injection folder), rebuilt when the source is
    newer."""
    return static_program(inguest.path(PROGRAM), cache / "fail_nth")


def stripped(ko: Path, cache: Path) -> Path:
    """A copy of `ko` without its debug info, in `cache`: a tenth of the
    size, so each of the sweep's loads reads and allocates less (the
    symbols stay, for the stacks)."""
    copy = cache / "modules" / ko.name
    copy.parent.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(
        ["objcopy", "--strip-debug", str(ko), str(copy)], capture_output=True, text=True
    )
    if res.returncode:
        raise BuildFailed(f"objcopy --strip-debug {ko.name} failed", res.stderr)
    return copy


def command(exe: Path, ko: str, name: str, params: list[str], nth: int | None) -> str:
    """The guest's shell line that runs the loads (fail_nth.py), or says
    NO_FAULT_INJECTION when the kernel has none."""
    args = {
        "program": str(exe),
        "ko": ko,
        "name": name,
        "params": " ".join(map(kernel_param, params)),
        "nth": nth or 0,
        "cap": CAP,
        "timeout": STEP_TIMEOUT,
    }
    run = ["python3", "-I", "-S", "-c", inguest.text("fail_nth.py"), json.dumps(args)]
    return f"if [ -d {FAILSLAB} ]; then {shlex.join(run)}; else echo {NO_FAULT_INJECTION}; fi"


def no_fault_injection(release: str) -> MissingDependency:
    return MissingDependency(
        f"kernel {release} has no fault injection ({FAILSLAB}): boot a debug kernel, "
        "kdk up --kernel debug (kdk kernel build --debug)"
    )


def site(records: list[kmsg.Record], module: str) -> str:
    """Where the failed allocation of a step's log was asked for: the first
    frame of the module on the fault's stack, the function it called, and
    the one that allocated ("kdkmisc_init+0x16 [kdkmisc] > misc_register >
    kvasprintf_const"); the first frame below the allocators when no frame
    is the module's."""
    frames: list[str] = []
    seen = False
    for r in records:
        if r.text.startswith("FAULT_INJECTION: forcing a failure"):
            seen, frames = True, []
        elif seen and r.text.startswith("</TASK>"):
            break
        elif seen and (m := oops.FRAME.match(r.text)) and not m.group(1):
            frames.append(
                r.text.strip().split("/0x")[0] + (f" [{m.group(3)}]" if m.group(3) else "")
            )
    below = [f for f in frames if not ALLOCATOR.match(f)]
    if not below:
        return "" if seen else SILENT
    at = next((i for i, f in enumerate(below) if f.endswith(f"[{module}]")), None)
    if at is None:  # the init's frame gone (a tail call), or after the init
        return below[0]
    called = [below[i].split("+")[0] for i in dict.fromkeys([at - 1, 0]) if 0 <= i < at]
    return " > ".join([below[at], *called])


def _check(step: Step, records: list[kmsg.Record], module: str, loaded: Step | None) -> list[str]:
    """The step's problems found in its kernel log: a crash or a warning,
    a report of the kernel's checks. A warning in a function of the kernel
    after `loaded`, a load the kernel let succeed although the step's
    allocation failed inside one of its functions, is the kernel's own:
    the module was told nothing failed, so it did what the sweep's last,
    clean load checks (6.1's request_irq goes on without the /proc/irq
    files it failed to make, and free_irq then warns that they are
    missing). Those warnings are returned, not counted."""
    text = "\n".join(r.format() for r in records)
    crashes, found = reports.split(text)
    hidden = loaded is not None and loaded.errno == 0 and bool(failed_call(loaded.site))
    own = []
    for c in crashes:
        if hidden and c.what == "warned" and not (c.module == module and not c.caller):
            own.append(c.summary())
        else:
            step.problems.append(f"{c.what}: {c.summary()}")
    step.problems += [r.summary() for r in found]
    return own


def _steps(ns: list[int]) -> str:
    return f"step {ns[0]}" if len(ns) == 1 else f"{len(ns)} steps ({', '.join(map(str, ns))})"


def parse(out: str, module: str) -> Sweep:
    """The sweep of fail_nth.py's output lines."""
    sweep = Sweep(module)
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    init = next((e["at"] for e in events if e["event"] == "init"), 0)
    # The loader's count of points before the init varies a little from
    # load to load (a slab needs a new page, or not): the first swept step
    # whose fault is in the init counts as its first point when it is earlier.
    swept_at = {e["n"] for e in events if e["event"] == "swept"}
    in_init = [e["n"] for e in events if e["event"] == "step" and e.get("in_init")]
    init = min([init, *(n for n in in_init if n in swept_at)]) if init else 0
    sweep.init_at = init
    by_n: dict[int, Step] = {}
    kernels: dict[tuple[str, str], list[int]] = {}  # (call, warning): steps

    def check(step: Step, records: list[kmsg.Record], loaded: Step | None) -> None:
        own = _check(step, records, module, loaded)
        if loaded is not None:
            for warning in own:
                kernels.setdefault((failed_call(loaded.site), warning), []).append(loaded.n)

    for e in events:
        records = kmsg.parse(e.get("log", ""))
        if e["event"] == "step" and e["n"] and init:
            step = Step(e["n"] - init + 1, e["pid"], e["errno"], e["injected"])
            step.site = site(records, module) if e["injected"] else ""
            check(step, records, step)
            if e["rc"] and not e["injected"]:
                step.problems.append(
                    "the load failed without the fault: an earlier step left something behind"
                )
            by_n[step.n] = step
        elif e["event"] == "step" and e["rc"]:  # the load without faults
            why = errno_text(e["errno"])
            refused = next((r.text for r in records if REFUSED.search(r.text)), "")
            why += f": {refused}" if refused else ""  # before init: the module's file
            sweep.notes.append(f"not swept: {module} does not load here ({why})")
        elif e["event"] == "unload":
            where = by_n.get(e["n"] - init + 1)
            if e["rc"]:
                what = f"rmmod after step {e['n'] - init + 1} failed: {errno_text(e['errno'])}"
                (where.problems if where else sweep.problems).append(what)
            unload = Step(0, 0, 0, False)
            check(unload, records, where)
            (where.problems if where else sweep.problems).extend(unload.problems)
        elif e["event"] == "drivers":
            for driver, devices in e["drivers"]:
                if not devices:
                    sweep.notes.append(
                        f"driver {driver} bound no device here: its probe was not swept"
                    )
        elif e["event"] == "hung":
            sweep.problems.append(
                f"the load of step {e['n'] - init + 1} has not returned after {e['seconds']:g} s"
            )
        elif e["event"] == "capped":
            sweep.problems.append(f"still failing after {e['cap']} points: not swept further")
    for (call, warning), ns in kernels.items():
        sweep.notes.append(
            f"{_steps(sorted(set(ns)))}: {warning}, after {call} went on without what it"
            " failed to allocate: the kernel's own error path, not counted"
        )
    swept = {e["n"] - init + 1 for e in events if e["event"] == "swept"}
    sweep.steps = [by_n[n] for n in sorted(by_n) if (n in swept and n >= 1) or by_n[n].problems]
    return sweep


def attribute_leaks(listing: str, sweeps: list[Sweep]) -> None:
    """kmemleak's list: each object allocated by a step's process becomes
    that step's problem, unless it was allocated inside the kernel function
    in which the step's allocation failed (the site's second name): that
    function's own error path did not free it, which no module can mend
    (6.1's sysfs_slab_add, under kmem_cache_create, leaks its kobject's
    name when kernfs fails). Those are one note of the sweep per function
    and stack. A loop of calls of one kernel function from one place in the
    init, whose earlier calls' objects the init did not free, looks the
    same and is not caught."""
    steps = {s.pid: (sw, s) for sw in sweeps for s in sw.steps}
    kernels: dict[tuple[int, str, str], list[int]] = {}  # (sweep, call, where): steps
    for leak in reports.leak_objects(listing):
        pid = PID.search(leak.text)
        sweep, step = steps.get(int(pid.group(1)), (None, None)) if pid else (None, None)
        if sweep is None or step is None:
            continue
        below = [f.split("/0x")[0] for f in leak.frames if not ALLOCATOR.match(f)]
        where = " < ".join(below[:3])
        call = failed_call(step.site)
        if call and call in _calls_from_module(leak.frames, sweep.module):
            kernels.setdefault((sweeps.index(sweep), call, where), []).append(step.n)
        else:
            step.problems.append(f"leak: {leak.size} bytes allocated at {where}")
    for (index, call, where), ns in kernels.items():
        sweeps[index].notes.append(
            f"{_steps(ns)}: leaked inside {call}, the call whose allocation failed ({where}):"
            " the kernel's own error path, not counted"
        )


def failed_call(site: str) -> str:
    """The kernel function the module called in which the step's
    allocation failed ("misc_register" of "kdkmisc_init+0x16 [kdkmisc] >
    misc_register > kvasprintf_const"); "" when the module allocated
    itself or its frame is not on the fault's stack."""
    parts = site.split(" > ")
    return parts[1] if len(parts) == 3 and parts[0].endswith("]") else ""


def _calls_from_module(frames: list[str], module: str) -> list[str]:
    """The functions between the allocation and the module's first frame
    on a leak's stack (kmemleak names them; the module's own frames are
    bare addresses once its failed load freed it)."""
    at = next(
        (i for i, f in enumerate(frames) if f.startswith("0x") or f.endswith(f"[{module}]")),
        0,
    )
    return [f.split("+")[0] for f in frames[:at]]


def table(sweep: Sweep) -> str:
    """The sweep's table: N, the failed allocation's site, the errno, verdict."""
    rows = [["N", "failed allocation", "result", "verdict"]]
    silent = [s for s in sweep.steps if s.site == SILENT and s.errno == 0 and not s.problems]
    for s in (s for s in sweep.steps if s not in silent):
        verdict = "FAIL: " + "; ".join(s.problems) if s.problems else "ok"
        rows.append([str(s.n), s.site or "-", s.outcome(), verdict])
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"== {sweep.module}"]
    lines += [
        "  ".join([*(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)), r[3]]).rstrip()
        for r in rows
    ]
    if silent:
        lines.append(
            f"(and {len(silent)} allocations that failed silently, __GFP_NOWARN: "
            "the loads went on, checked)"
        )
    lines += [f"{sweep.module}: {p}" for p in sweep.problems]
    lines += [f"{sweep.module}: {n}" for n in sweep.notes]
    return "\n".join(lines)
