"""Run in the guest by kdk.modules.faultinject: loads of one module, each
with the N-th fault-injection point of the load made to fail.

The kernel's fault injection (Documentation/fault-injection/) is told to
fail the N-th allocation of one task: N written to the task's
/proc/self/task/<tid>/fail-nth counts the calls of failslab and
fail_page_alloc from then on, and the N-th fails (reading the file gives 0
then). Each load is its own process, the program `fail_nth` (fail_nth.c,
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

import ctypes
import json
import os
import subprocess
import sys

SYS_DELETE_MODULE = 176  # x86-64
ATTRS = {  # what fail-nth needs: GFP_KERNEL and order-0 pages counted too
    "failslab": {"ignore-gfp-wait": "N", "verbose": "2", "verbose_ratelimit_interval_ms": "0"},
    "fail_page_alloc": {
        "ignore-gfp-wait": "N",
        "ignore-gfp-highmem": "N",
        "min-order": "0",
        "verbose": "2",
        "verbose_ratelimit_interval_ms": "0",
    },
}
DEBUGFS = "/sys/kernel/debug"
STAGE = "/run/kdk/fail_nth"
PRINTK = "/proc/sys/kernel/printk"
FAULT = "FAULT_INJECTION: forcing a failure"
MARGIN = 3  # points before the init's first the sweep starts at: the loader's count varies
libc = ctypes.CDLL(None, use_errno=True)


def out(**event):
    print(json.dumps(event), flush=True)


def setup():
    for attr, values in ATTRS.items():
        for name, value in values.items():
            with open(f"{DEBUGFS}/{attr}/{name}", "w") as f:
                f.write(value)


def drain(kmsg):
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
    def __init__(self, args):
        self.name = args["name"]
        self.program, self.params = args["program"], args["params"]
        # A copy in tmpfs: a load from the host's share over 9p allocates on
        # its way (9p requests), each point one more load to sweep.
        os.makedirs(STAGE, exist_ok=True)
        self.ko = f"{STAGE}/{self.name}.ko"
        with open(args["ko"], "rb") as src, open(self.ko, "wb") as dst:
            dst.write(src.read())
        self.timeout = args["timeout"]
        self.kmsg = os.open("/dev/kmsg", os.O_RDWR | os.O_NONBLOCK)
        os.lseek(self.kmsg, 0, os.SEEK_END)
        self.done = {}

    def mark(self, text):
        os.write(self.kmsg, f"<3>kdk-fail-nth: {self.name} {text}\n".encode())

    def load(self, n):
        """One load whose n-th point fails (0: none); its step, said once."""
        if n in self.done:
            return self.done[n]
        drain(self.kmsg)
        self.mark(f"step {n}")
        argv = [self.program, self.ko, str(n), self.params]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        try:
            rc, err, left = map(int, proc.communicate(timeout=self.timeout)[0].split())
        except subprocess.TimeoutExpired:  # an init that does not return: nothing ends it
            out(event="hung", n=n, pid=proc.pid, seconds=self.timeout, log=drain(self.kmsg))
            sys.exit(3)
        res, pid = {"rc": rc, "errno": err, "left": left}, proc.pid
        log = drain(self.kmsg)
        fault = log[log.find(FAULT) :] if FAULT in log else ""
        step = dict(n=n, pid=pid, injected=bool(n) and res.get("left") == 0, **res)
        step["fault"] = fault
        step["in_module"] = f"[{self.name}]" in fault
        out(event="step", log=log, **step)
        self.done[n] = step
        if res.get("rc") == 0:
            self.unload(n)
        return step

    def unload(self, n):
        drivers, folder = [], f"/sys/module/{self.name}/drivers"
        for d in sorted(os.listdir(folder) if n == 0 and os.path.isdir(folder) else []):
            path = f"{folder}/{d}"
            devices = [e for e in os.listdir(path) if os.path.islink(f"{path}/{e}")]
            drivers.append([d, sorted(e for e in devices if e != "module")])
        if drivers:
            out(event="drivers", drivers=drivers)
        self.mark(f"unload after step {n}")
        rc = libc.syscall(SYS_DELETE_MODULE, self.name.encode(), os.O_NONBLOCK)
        err = ctypes.get_errno() if rc else 0
        out(event="unload", n=n, rc=rc, errno=err, log=drain(self.kmsg))
        if rc:
            sys.exit(2)

    def after_init_start(self, n):
        """Whether the n-th point is in the init or after it: True when
        the fault's stack has do_init_module (or the load did not reach
        n), False when it has not; None for a fault that said nothing
        (__GFP_NOWARN: the caller has a fallback)."""
        step = self.load(n)
        fault = step["fault"]
        if not step["injected"] or "do_init_module" in fault or "do_one_initcall" in fault:
            return True
        return False if fault else None

    def init_start(self, hi):
        """The first point of the init (bisection over the points of a
        load; a silent point is decided by the next one that says)."""
        lo = 1
        while lo < hi:
            mid = (lo + hi) // 2
            m, known = mid, None
            while m < hi and known is None:
                known = self.after_init_start(m)
                m += 1
            if known is False:
                lo = m
            else:  # the silent points before a True one are taken as in the init
                hi = mid
        return lo


def main():
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


def sweep(args):
    setup()
    loads = Loads(args)
    probe = loads.load(args["cap"] * 100)  # no fault: how many points a load has
    if probe["rc"] != 0 or probe["injected"]:
        return  # it does not load at all (or has too many points): nothing to sweep
    cap = args["cap"]
    start = loads.init_start(args["cap"] * 100 - probe["left"] + 1)
    out(event="init", at=start)
    if args["nth"]:
        loads.load(start + args["nth"] - 1)
        out(event="swept", n=start + args["nth"] - 1)
        return
    for n in range(max(1, start - MARGIN), start + cap):
        step = loads.load(n)
        out(event="swept", n=n)
        fault = step["fault"]
        after = "do_init_module" in fault and "do_one_initcall" not in fault
        if step["rc"] == 0 and (not step["injected"] or after):
            return  # loaded, with no fault or one after the init: the sweep's end
        if step["rc"] and not step["injected"] and n >= start:
            return  # it fails without the fault now: an earlier step left something behind
    out(event="capped", cap=cap)


main()
