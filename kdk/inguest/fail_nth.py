"""Run in the guest by kdk.modules.faultinject: loads of one module, each
with the N-th fault-injection point of the load made to fail.

The kernel's fault injection (Documentation/fault-injection/) is told to
fail the N-th allocation of one task: N written to the task's
/proc/self/task/<tid>/fail-nth counts the calls of failslab from then on
(fail_page_alloc's are kept out: see ATTRS), and the N-th fails (reading
the file gives 0 then). Each load is its own process, the program `fail_nth` (fail_nth.c,
its pid names the load in kmemleak's list), which writes N and calls
finit_module(2) at once: no page fault, no exec in between.

The count starts at the syscall, so the kernel's module loader (reading
the file, laying the module out) comes before the module's init. The
first point of the init is found by bisection: a fault there or later has
do_one_initcall on its stack (the init's own frame may be gone: a tail
call), or the load succeeds anyway (after the init, or beyond the last
point). The sweep then goes on from a little before that point, one load
per N, until a load succeeds with its fault after the init (on the stack
of do_init_module, not of the init) or not reached at all.

Argument: one JSON object (program: fail_nth's path, ko, name, params,
nth: one N from the init's first point, else a sweep; cap: most loads of
the sweep; timeout: s per load). Output:
one JSON object per line: {"event": "init", "at": N} where the init starts,
{"event": "step", ...} per load (the bisection's too), {"event": "swept",
"n": N} per load of the sweep, {"event": "unload", ...}, {"event":
"drivers", ...} (the drivers the module registered, with the devices each
bound: a probe runs only for a device), {"event": "hung", ...}. Python's
standard library only (the guest runs the host's /usr/bin/python3).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import subprocess
import sys
from typing import Any

SYS_DELETE_MODULE = 176  # x86-64
# What fail-nth counts: every slab allocation (GFP_KERNEL too), and no page
# allocation. A slab allocation is a point on every load; a page is
# allocated only when a slab needs a new one, so counting pages would move
# the init's points from one load to the next (a sweep would skip some).
ATTRS = {
    "failslab": {"ignore-gfp-wait": "N", "verbose": "2", "verbose_ratelimit_interval_ms": "0"},
    "fail_page_alloc": {"ignore-gfp-wait": "Y", "ignore-gfp-highmem": "Y", "min-order": "11"},
}
# Some slab allocations of a load happen on some loads only: a vmap_area
# node and a page table's lock (page->ptl) while the loader maps the
# module, a radix tree node for the IDR of sysfs's nodes, each with
# kmemleak's record of it (kmemleak_object, one more point after every
# allocation). Counted, they moved the init's points from one load to the
# next, and a sweep missed one of them in about one sweep of four (4 of
# 14 here; with those caches left out, the same points in 10 of 10). kdk
# boots the kernels it builds with those caches unmarked (kdk.vm.qemu.
# slub_debug: slub_debug=A but for them); with cache-filter on, failslab
# counts only the marked ones.
MARKED = re.compile(r"(^|\s)slub_debug=[A-Z]*A[A-Z]*;-,")
DEBUGFS = "/sys/kernel/debug"
STAGE = "/run/kdk/fail_nth"
PRINTK = "/proc/sys/kernel/printk"
FAULT = "FAULT_INJECTION: forcing a failure"
MARGIN = 12  # points before the init's first the sweep starts at: the loader's count varies
SILENT = 4  # points tried after a silent one in the bisection
NO_FAULT = 1 << 20  # an N no load reaches: the load without a fault
libc = ctypes.CDLL(None, use_errno=True)


def out(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def setup() -> None:
    with open("/proc/cmdline") as f:
        marked = MARKED.search(f.read()) is not None
    for attr, values in ATTRS.items():
        for name, value in values.items():
            with open(f"{DEBUGFS}/{attr}/{name}", "w") as f:
                f.write(value)
    with open(f"{DEBUGFS}/failslab/cache-filter", "w") as f:
        f.write("Y" if marked else "N")


def drain(kmsg: int) -> str:
    """The kernel log records since the last call, in /dev/kmsg's format."""
    chunks = []
    while True:
        try:
            chunks.append(os.read(kmsg, 16384).decode(errors="replace"))
        except BlockingIOError:
            return "".join(chunks)
        except OSError:  # EPIPE: records were overwritten; go on with the next
            continue


class Loads:
    """The loads of one module, each said once (a bisection asks again)."""

    def __init__(self, args: dict[str, Any]) -> None:
        self.name: str = args["name"]
        self.program: str = args["program"]
        self.params: str = args["params"]
        self.timeout: float = args["timeout"]
        # A copy in tmpfs: a load from the host's share over 9p allocates on
        # its way (9p requests), each point one more load to sweep.
        os.makedirs(STAGE, exist_ok=True)
        self.ko = f"{STAGE}/{self.name}.ko"
        with open(args["ko"], "rb") as src, open(self.ko, "wb") as dst:
            dst.write(src.read())
        self.kmsg = os.open("/dev/kmsg", os.O_RDWR | os.O_NONBLOCK)
        os.lseek(self.kmsg, 0, os.SEEK_END)
        self.done: dict[int, dict[str, Any]] = {}
        self.faults: dict[int, str] = {}  # each load's fault and what the log says after it

    def mark(self, text: str) -> None:
        """A line in the kernel log (and on the console) before each load."""
        os.write(self.kmsg, f"<3>kdk-fail-nth: {self.name} {text}\n".encode())

    def load(self, n: int) -> dict[str, Any]:
        """The load whose n-th point fails; an init that does not return
        ends the run (exit 3): nothing can end it from outside."""
        if n in self.done:
            return self.done[n]
        drain(self.kmsg)
        self.mark(f"step {n}")
        proc = subprocess.Popen(
            [self.program, self.ko, str(n), self.params], stdout=subprocess.PIPE, text=True
        )
        try:
            rc, err, left = map(int, proc.communicate(timeout=self.timeout)[0].split())
        except subprocess.TimeoutExpired:
            out(event="hung", n=n, pid=proc.pid, seconds=self.timeout, log=drain(self.kmsg))
            sys.exit(3)
        log = drain(self.kmsg)
        self.faults[n] = log[log.find(FAULT) :] if FAULT in log else ""
        step = {"n": n, "pid": proc.pid, "rc": rc, "errno": err, "left": left}
        step["injected"] = n != NO_FAULT and left == 0
        step["in_init"] = "do_one_initcall" in self.faults[n]
        out(event="step", log=log, **step)
        self.done[n] = step
        if rc == 0:
            self.unload(n)
        return step

    def unload(self, n: int) -> None:
        """rmmod after a load that succeeded (exit 2 when that fails);
        after the load without a fault, the drivers the module registered
        and the devices each bound first."""
        drivers, folder = [], f"/sys/module/{self.name}/drivers"
        for d in sorted(os.listdir(folder)) if n == NO_FAULT and os.path.isdir(folder) else []:
            links = [e for e in os.listdir(f"{folder}/{d}") if os.path.islink(f"{folder}/{d}/{e}")]
            drivers.append([d, sorted(e for e in links if e != "module")])
        if drivers:
            out(event="drivers", drivers=drivers)
        self.mark(f"unload after step {n}")
        rc = libc.syscall(SYS_DELETE_MODULE, self.name.encode(), os.O_NONBLOCK)
        err = ctypes.get_errno() if rc else 0
        out(event="unload", n=n, rc=rc, errno=err, log=drain(self.kmsg))
        if rc:
            sys.exit(2)

    def after_init_start(self, n: int) -> bool | None:
        """Whether the n-th point is in the init or after it: True when
        the fault's stack has do_init_module (or the load did not reach
        n), False when it has not; None for a fault that said nothing
        (__GFP_NOWARN: the caller has a fallback)."""
        step = self.load(n)
        fault = self.faults[n]
        if not step["injected"] or "do_init_module" in fault or "do_one_initcall" in fault:
            return True
        return False if fault else None

    def init_start(self, hi: int) -> int:
        """The first point of the init (bisection over the points of a
        load; a silent point is decided by one of the next SILENT that
        says, else taken as in the init: the sweep may start early)."""
        lo = 1
        while lo < hi:
            mid = (lo + hi) // 2
            m, known = mid, None
            while m < min(hi, mid + SILENT) and known is None:
                known = self.after_init_start(m)
                m += 1
            if known is False:
                lo = m
            else:  # silent points before a True one (or many) are taken as in the init
                hi = mid
        return lo

    def ended(self, n: int) -> bool:
        """Whether the sweep ends with the load of n: it loaded with no
        fault, or with one after the init (do_init_module's, not the init's);
        or it failed without its fault (an earlier step left something
        behind, said by the host)."""
        step, fault = self.done[n], self.faults[n]
        after = "do_init_module" in fault and "do_one_initcall" not in fault
        return not step["injected"] or (step["rc"] == 0 and after)


def sweep(args: dict[str, Any]) -> None:
    setup()
    loads = Loads(args)
    probe = loads.load(NO_FAULT)
    if probe["rc"] != 0:
        return  # it does not load at all: nothing to sweep
    start = loads.init_start(NO_FAULT - probe["left"] + 1)
    out(event="init", at=start)
    if args["nth"]:
        loads.load(start + args["nth"] - 1)
        out(event="swept", n=start + args["nth"] - 1)
        return
    for n in range(max(1, start - MARGIN), start + args["cap"]):
        loads.load(n)
        out(event="swept", n=n)
        if n >= start and loads.ended(n):
            return
    out(event="capped", cap=args["cap"])


def main() -> None:
    """The loads, with the console quiet below errors meanwhile: the stack
    of every fault would go over the slow serial line (KASAN's reports
    and the like are errors, and still go)."""
    with open(PRINTK) as f:
        levels = f.read().split()
    with open(PRINTK, "w") as f:
        f.write("4")
    try:
        sweep(json.loads(sys.argv[1]))
    finally:
        with open(PRINTK, "w") as f:
            f.write(levels[0])


main()
