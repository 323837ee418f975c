#!/usr/bin/env python3
"""kdk's speed, measured the way a user meets it, written to BENCHMARKS.md.

Each figure is the median of several runs of the real `kdk` command (a new
Python process each time, as from a shell) against a VM of its own
(KDK_VM=bench), next to virtme-ng doing the same insmod/rmmod/dmesg cycle
on the same kernel, from a stopped VM as virtme-ng always is (1b) and
with kdk's VM running (3). Run with `make bench`. The file it writes holds
only what this run measured; notes written by hand (where the time goes)
are in scripts/bench-notes.md. With --suite it also runs issue 8's
`make test` comparison like for like (scripts/bench_suite.py).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

from bench_kernel import kernel_rows, peer_env  # noqa: E402
from bench_run import Row, failed, timed_run  # noqa: E402
from bench_suite import OLD, TARGET, suite_rows  # noqa: E402

from kdk.api import Kdk  # noqa: E402
from kdk.errors import KdkError  # noqa: E402
from kdk.kernel import select_kernel  # noqa: E402
from kdk.modules.build import build  # noqa: E402
from kdk.project import find_module  # noqa: E402
from kdk.testrun import tested_modules  # noqa: E402
from kdk.vm.qemu import probe_kvm  # noqa: E402

VM = "bench"
COLD_CYCLE = "1b. `kdk up` + `kdk load hello` + `kdk down`, from a stopped VM"
LIBRARY_EXECS = '2b. 20 `k.exec("true")` on one new `Kdk` (Python, one process)'
WARM_LOAD = "3. `kdk load hello`, sources unchanged, VM running"
PEER = "8. virtme-ng: boot, insmod, rmmod, dmesg (the peer of 1b and 3)"
HELLO_C = PROJECT / "kmods" / "hello" / "hello.c"
TEST_DEVICES = ("--device", "edu", "--can", "2")  # what the drivers' and labs' tests ask for
DURATION = re.compile(r"^\s*([\d.]+)s (setup|call|teardown) +(\S+)", re.M)  # pytest --durations


def kdk(*args: str, expect: int = 0, **env: str) -> float:
    """Seconds one `kdk` command takes; it must exit with `expect`."""
    return kdk_output(*args, expect=expect, **env)[0]


def kdk_output(*args: str, expect: int = 0, **env: str) -> tuple[float, str]:
    """Seconds one `kdk` command takes, and what it printed (stdout and
    stderr); it must exit with `expect`."""
    argv = [sys.executable, "-m", "kdk.cli", *args]
    env = dict(os.environ, KDK_VM=VM, **env)
    return timed_run(argv, env=env, expect=expect, shown=["kdk", *args])


# The line `kdk -v load` and `kdk -v trace` print: where the time went.
TOOK = re.compile(r"^kdk: took (.*)$", re.M)
PHASE = re.compile(r"(.+?) (\d+\.\d+) s(?:, |$)")
REST = "the rest: Python's start, kdk's imports, the end"


def phases(output: str) -> dict[str, float]:
    """The phases of the last `kdk: took` line of a command's output."""
    lines = TOOK.findall(output)
    if not lines:
        raise SystemExit(f"bench: no `kdk: took` line in:\n{output}")
    return {m.group(1): float(m.group(2)) for m in PHASE.finditer(lines[-1])}


class Breakdown:
    """Runs of a command that says where its time went (`kdk -v ...: took`):
    the times of the runs, and of each phase of them, for sub-rows."""

    def __init__(self) -> None:
        self.phases: dict[str, list[float]] = {}

    def timed(self, *args: str) -> float:
        took, output = kdk_output("-v", *args)
        self.add(took, output)
        return took

    def add(self, took: float, output: str) -> None:
        """One run's phases; what they leave of its time is the process's
        own start (Python, kdk's imports) and its end."""
        said = phases(output)
        said[REST] = took - sum(said.values())
        for phase, t in said.items():
            self.phases.setdefault(phase, []).append(t)

    def rows(self, number: str) -> list[Row]:
        return [(f"{number}. of which {phase}", t, None) for phase, t in self.phases.items()]


def first_up() -> float:
    """`kdk up` with nothing cached: initramfs, bare kernel, KVM probe."""
    cold = PROJECT / ".kdk" / "bench-cold"
    shutil.rmtree(cold, ignore_errors=True)
    try:
        took = kdk("up", KDK_STATE=str(cold))
        kdk("down", KDK_STATE=str(cold))
        return took
    finally:
        shutil.rmtree(cold, ignore_errors=True)


def trace_attach(breakdown: Breakdown | None = None) -> float:
    """From starting `kdk trace kdkchar` to its line saying the probes are
    on; the phases `kdk -v trace` says go to `breakdown`."""
    env = dict(os.environ, KDK_VM=VM)
    argv = [sys.executable, "-m", "kdk.cli", "-v", "trace", "kdkchar", "--duration", "0"]
    t = time.monotonic()
    took, output = None, []
    with subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:  # read to the end: `--duration 0` detaches at once
            output.append(line)
            if took is None and line.startswith("kdk: tracing "):
                took = time.monotonic() - t
    if took is None:
        raise failed(["kdk", *argv[3:]], proc.returncode, "".join(output))
    if breakdown is not None:
        breakdown.add(took, "".join(output))
    return took


def trace_rows(n: int, number: str, what: str, target: float | None) -> list[Row]:
    """`kdk trace kdkchar` on the running VM (kdkchar loaded): the first
    after its boot (the guest's bcc server starts, clang compiles), then
    `n` more (bcc imported, the compiled program reused), with phases."""
    first, warm = Breakdown(), Breakdown()
    rows: list[Row] = [
        (
            f"{number}a. `kdk trace kdkchar`{what}, the first after boot (bcc server start)",
            [trace_attach(first)],
            None,
        ),
        *first.rows(number + "a"),
    ]
    rows.append(
        (
            f"{number}. `kdk trace kdkchar`{what} to probes attached (8 functions, 16 probes)",
            repeat(n, lambda: trace_attach(warm)),
            target,
        )
    )
    return rows + warm.rows(number + "b")


def cold_cycle(steps: dict[str, list[float]]) -> float:
    """What virtme-ng's cycle does, the kdk way, from a stopped VM; each
    command's own time goes to `steps`."""
    t = time.monotonic()
    for args in (["up"], ["load", "hello"], ["down"]):
        steps.setdefault(f"`kdk {' '.join(args)}`", []).append(kdk(*args))
    return time.monotonic() - t


def library_execs(n: int = 20) -> float:
    """n commands through the library, on a new Kdk (its connect included)."""
    t = time.monotonic()
    k = Kdk(vm=VM)
    for _ in range(n):
        k.exec("true")
    return time.monotonic() - t


def panic_to_working() -> float:
    """From a command that panics the guest to the next command answering."""
    crash = kdk("exec", "--", "sh", "-c", "echo c > /proc/sysrq-trigger", expect=4)
    return crash + kdk("exec", "--", "true")


def debug_rows(n: int) -> list[Row]:
    """`kdk gdb` and `kdk inspect` on the loaded kdkchar (the VM is up)."""
    query = ["gdb", "kdkchar", "--", "-batch", "-ex", "info line kdkchar_write"]
    return [
        (
            "5b. `kdk gdb kdkchar` to gdb with its symbols loaded (batch, one query)",
            repeat(n, lambda: kdk(*query)),
            None,
        ),
        (
            "5c. `kdk inspect kdkchar` (built: sections, symbols, modinfo, kernel exports)",
            repeat(n, lambda: kdk("inspect", "kdkchar")),
            None,
        ),
    ]


def net_rows(k: Kdk, n: int) -> list[Row]:
    """The packet labs: the wire's round trips, a two-namespace topology
    (first after a boot, with the net agent's start; then warm), each
    lab's tests. Boots the VM again for each first-topology sample."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether

    from kdk.net.topology import NetAgent, Topology
    from kdk.testing.net import build_pair

    def round_trips(count: int = 500) -> float:
        with k.wire() as w:
            echo = bytes(
                Ether(src=w.host_mac, dst=w.guest_mac) / IP(src=w.host_ip, dst=w.guest_ip) / ICMP()
            )
            t = time.monotonic()
            for _ in range(count):
                if w.exchange(echo) is None:
                    raise SystemExit("bench: no echo reply on the wire")
            return time.monotonic() - t

    def pair(agent: NetAgent) -> float:
        t = time.monotonic()
        with Topology(agent) as topo:
            build_pair(topo)
            return time.monotonic() - t

    # this process's channel to the guest (its start, the first answer's
    # wait aside), the wait for the agent's first answer, its server's
    # start to ready, and of that its import of pyroute2
    channels: list[float] = []
    starts: list[tuple[float, float, float]] = []

    def first_pair() -> float:
        k.down()
        kdk("up")
        t = time.monotonic()
        agent = NetAgent(k.guest())
        channels.append(time.monotonic() - t - agent.wait_seconds)
        starts.append((agent.wait_seconds, agent.start_seconds, agent.import_seconds))
        try:
            return time.monotonic() - t + pair(agent)
        finally:
            agent.close()

    rows = [
        (
            "9a. the wire: 500 ICMP echo round trips through the guest (≥ 500/s)",
            repeat(n, round_trips),
            1.0,
        ),
        (
            "9b. two namespaces on a veth pair, first after boot (net agent start)",
            repeat(3, first_pair),
            2.0,
        ),
        (
            "9b0. of which this process's channel (its own SSH login while `kdk up`'s"
            " OpenSSH master logs in, else on that master)",
            channels,
            None,
        ),
        ("9b1. of which waiting for the net agent's first answer", [w for w, _, _ in starts], None),
        (
            "9b2. of which its server's start to ready (python3, pyroute2)",
            [r for _, r, _ in starts],
            None,
        ),
        ("9b3. of which its import of pyroute2", [i for _, _, i in starts], None),
    ]
    agent = NetAgent(k.guest())
    try:
        warm = repeat(n, lambda: pair(agent))
    finally:
        agent.close()
    rows.append(("9c. two namespaces on a veth pair, warm", warm, 1.0))
    # The labs in a VM with the devices their tests ask for (the CAN lab's
    # controllers), then the plain VM again for the rows after.
    k.down()
    kdk("up", *TEST_DEVICES)
    labs = sorted(p.name for p in (PROJECT / "rawnet").glob("*/") if any(p.glob("test_*.py")))
    rows += [(f"9d. `kdk test {lab}`", [kdk("test", lab)], None) for lab in labs]
    rows.append(("9e. `kdk test rawnet`, every lab", [kdk("test", "rawnet")], None))
    k.down()
    kdk("up")
    return rows


def timed_test_run(*args: str) -> tuple[float, dict[str, float]]:
    """Seconds `kdk test` (every module, driver and lab) takes, and from
    pytest's durations the seconds of each part: "setup", "call" and
    "teardown" summed, each top folder's ("kmods", ...), and "oops":
    faulty's oops tests, each of which boots the VM again."""
    argv = [sys.executable, "-m", "kdk.cli", "test", *args]
    env = dict(os.environ, KDK_VM=VM, PYTEST_ADDOPTS="--durations=0 --durations-min=0")
    took, out = timed_run(argv, env=env, shown=["kdk", "test", *args])
    parts: dict[str, float] = {}
    for m in DURATION.finditer(out):
        seconds, phase, nodeid = float(m.group(1)), m.group(2), m.group(3)
        folder = nodeid.split("/", 1)[0]
        oops = ["oops"] if "test_an_oops_is_reported" in nodeid else []
        for key in (phase, folder, *oops):
            parts[key] = parts.get(key, 0.0) + seconds
    return took, parts


def test_run_rows(k: Kdk) -> list[Row]:
    """`kdk test` in the running VM, booted with the devices the drivers'
    and labs' tests ask for, with where its time goes; then `kdk test -j 2`
    (two VMs of the same kernel that the run boots, test files shared out)
    once so, and three times over every module and driver alone: issue
    18's row (260 s then, for 121 tests) is of those, the labs' tests came
    to `kdk test` after it, and the issue's targets are medians."""
    kdk("up", *TEST_DEVICES)
    one, parts = timed_test_run()
    two = timed_test_run("-j", "2")[0]
    modules = [m.name for m in tested_modules(k)]
    no_labs = [timed_test_run("-j", "2", *modules)[0] for _ in range(3)]
    kdk("down")
    breakdown = [
        ("setup", "fixtures' set-up (loads, the VMs tests boot, namespaces)"),
        ("call", "the tests' own calls"),
        ("teardown", "teardown (unloads, namespaces removed)"),
        ("kmods", "the tests of kmods/"),
        ("drivers", "the tests of drivers/"),
        ("rawnet", "the tests of rawnet/ (the labs)"),
        ("oops", "faulty's oops tests (each boots the VM again)"),
    ]
    return [
        ("7. `kdk test`, every module, driver and lab, in the running VM", [one], None),
        *(
            (f"7{letter}. of which {what}", [parts.get(key, 0.0)], None)
            for letter, (key, what) in zip("abcdefg", breakdown, strict=True)
        ),
        ("7h. `kdk test -j 2`, the same tests in two VMs the run boots, cores shared", [two], None),
        (
            f"7i. `kdk test -j 2` over every module and driver ({len(modules)} folders),"
            " without the labs: the scope of issue 18's row",
            no_labs,
            130.0,
        ),
    ]


def vagrant_rows(n: int) -> list[Row]:
    """The Vagrant backend, on the same VM name (its QEMU VM stopped first):
    the box built from Debian's archive, `kdk up --backend vagrant` from a
    destroyed VM (box cached; the first one also copies the box into the
    VM's storage pool), a warm load, and a crash to a working VM. `kdk down
    --destroy` ends it, which also returns the VM name to QEMU."""
    rows: list[Row] = [
        (
            "10a. `kdk box build`, from Debian's archive (Vagrant box)",
            [kdk("box", "build", "--force")],
            None,
        ),
        (
            "10b. `kdk up --backend vagrant`, cold (VM destroyed) to ready",
            repeat(
                min(n, 2),
                lambda: kdk("up", "--backend", "vagrant"),
                before=lambda: kdk("down", "--destroy"),
            ),
            None,
        ),
    ]
    kdk("load", "hello")
    rows.append(
        (
            "10c. `kdk load hello` warm, Vagrant backend",
            repeat(n, lambda: kdk("load", "hello")),
            None,
        )
    )
    kdk("load", "faulty")
    trigger = "echo null > /sys/kernel/debug/kdk_faulty/trigger"
    rows.append(
        (
            "10d. a crash on the Vagrant backend: from the command to a working VM",
            [kdk("exec", "--", "sh", "-c", trigger, expect=4)],
            None,
        )
    )
    kdk("down", "--destroy")
    return rows


def repeat(
    n: int, run: Callable[[], float], before: Callable[[], object] = lambda: None
) -> list[float]:
    out = []
    for _ in range(n):
        before()
        out.append(run())
    return out


def vng_cycle(release: str, ko: Path, accel_name: str) -> float:
    env = peer_env()
    accel = [] if accel_name == "kvm" else ["--disable-kvm"]
    cmd = f"insmod {ko} && rmmod hello && dmesg | grep hello"
    argv = ["vng", *accel, "-r", f"/boot/vmlinuz-{release}", "--", "sh", "-c", cmd]
    return timed_run(argv, env=env)[0]


def machine() -> str:
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    return f"{os.cpu_count()} cores ({cpu}), {mem} GiB, host kernel {platform.release()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=5, help="runs per kdk figure (median)")
    ap.add_argument("--peer-runs", type=int, default=3, help="runs of the virtme-ng cycle")
    ap.add_argument("--out", type=Path, default=PROJECT / "BENCHMARKS.md")
    ap.add_argument(
        "--no-vagrant",
        action="store_true",
        help="leave out the Vagrant backend's rows (they take ~10 min)",
    )
    ap.add_argument(
        "--suite",
        action="store_true",
        help=f"also run {OLD}'s test suite on its own code and the same tests"
        " on today's, each from cold (rows 11a/11b; 10-20 min more: off by"
        " default; needs root for a mount namespace)",
    )
    ap.add_argument(
        "--kernel-cold",
        action="store_true",
        help="also build the debug kernel from nothing, then virtme-ng's of the"
        " same tree (rows 12a/12b: 40-80 min more on 2 cores: off by default)",
    )
    ap.add_argument(
        "--backends",
        action="store_true",
        help="only the rows that set the two backends side by side (QEMU's 1 and"
        " 3, Vagrant's 10a-10d: ~10 min), into --out (give another file)",
    )
    ap.add_argument(
        "--kernels",
        action="store_true",
        help="only the rows of the kernel kdk builds (12c-12f; 12a/12b with"
        " --kernel-cold) beside the distribution kernel's 1 and 3, their peers"
        " (~10 min), into --out (give another file)",
    )
    a = ap.parse_args()

    k = Kdk(vm=VM)
    kernel = select_kernel()
    k.down()
    if a.backends:
        kdk("up")
        accel = str(k.status()["accel"])
        write(a.out, table(kernel.release, accel, a.n, "", backend_rows(k, a.n)))
        return 0
    if a.kernels:
        kdk("up")
        accel = str(k.status()["accel"])
        rows = [cold_up_row(k, a.n)]
        kdk("load", "hello")
        rows += warm_load_rows(a.n)
        rows += kernel_rows(k, a.n, a.kernel_cold, kdk)
        write(a.out, table(kernel.release, accel, a.n, "", rows))
        return 0
    # The peer first: if it cannot run here, say so before the long part.
    ko = build(find_module("hello", PROJECT), kernel, k.state / "builds").main_module("hello")
    kdk("up")
    accel = str(k.status()["accel"])
    k.down()
    peer = repeat(a.peer_runs, lambda: vng_cycle(kernel.release, ko, accel))
    rows = [cold_up_row(k, a.n)]
    k.down()
    steps: dict[str, list[float]] = {}
    rows.append((COLD_CYCLE, repeat(a.n, lambda: cold_cycle(steps)), 3.4))
    rows += [(f"1b{i}. of which {step}", t, None) for i, (step, t) in enumerate(steps.items(), 1)]
    kdk("up")
    rows.append(
        (
            "2. `kdk exec -- true`, a new process, VM running",
            repeat(a.n, lambda: kdk("exec", "--", "true")),
            0.35,
        )
    )
    rows.append((LIBRARY_EXECS, repeat(a.n, library_execs), 2.0))
    kdk("load", "hello")
    rows += warm_load_rows(a.n)
    rows.append(
        (
            "4. `kdk load hello` after touching hello.c",
            repeat(a.n, lambda: kdk("load", "hello"), before=HELLO_C.touch),
            2.5,
        )
    )
    kdk("load", "kdkchar")
    rows += trace_rows(a.n, "5", "", 5.0)
    rows += debug_rows(a.n)
    rows += net_rows(k, a.n)
    rows.append(("6. a panic: from the command to a working VM", repeat(3, panic_to_working), 15.0))
    k.down()
    rows += test_run_rows(k)
    rows += newer_kernel_rows(a.n)
    rows += kernel_rows(k, a.n, a.kernel_cold, kdk)
    if not a.no_vagrant:
        rows += vagrant_rows(a.n)
    if a.suite:
        rows += suite_rows(PROJECT, kernel)
    rows.insert(0, ("0. `kdk up`, first ever (nothing cached)", [first_up()], None))
    rows.append((PEER, peer, None))
    med = {name: statistics.median(t) for name, t, _ in rows}
    warm, cold = med[PEER] / med[WARM_LOAD], med[PEER] / med[COLD_CYCLE]
    lines = table(kernel.release, accel, a.n, f"; virtme-ng: median of {a.peer_runs}", rows)
    lines += [
        "",
        f"- Like for like, both from a stopped VM (1b against 8): kdk's cycle is"
        f" **{cold:.1f} times** faster than virtme-ng's.",
        f"- The loop a user lives in, kdk with a running VM against virtme-ng cold (3 against"
        f" 8): **{warm:.0f} times**. This compares a warm VM with a cold boot.",
    ]
    suite = [med[name] for name, _, _ in rows if name.startswith(("11a.", "11b."))]
    if suite:
        lines.append(
            f"- Like for like, {OLD}'s tests (11b against 11a): today's code takes"
            f" **{suite[1] / suite[0]:.0%}** of the old time (target ≤ {TARGET:.0%})."
        )
    write(a.out, lines)
    return 0


def backend_rows(k: Kdk, n: int) -> list[Row]:
    """QEMU's cold up and warm load, then the Vagrant rows, in one run."""
    rows = [cold_up_row(k, n)]
    kdk("load", "hello")
    rows += warm_load_rows(n)
    k.down()
    return rows + vagrant_rows(n)


def newer_kernel_rows(n: int, spec: str = "6.12") -> list[Row]:
    """`kdk trace` on the host's newer kernel (its bcc work in the guest is
    slower), on a VM of its own booted for it; none without that kernel."""
    try:
        release = select_kernel(spec).release
    except KdkError:
        return []
    kdk("up", "--kernel", release)
    try:
        kdk("load", "kdkchar")
        return trace_rows(n, "5d", f" on {release}", 6.0)
    finally:
        kdk("down")


def cold_up_row(k: Kdk, n: int) -> Row:
    return (
        "1. `kdk up`, cold (VM stopped) to ready",
        repeat(n, lambda: kdk("up"), before=lambda: k.down()),
        10.0,
    )


def warm_load_rows(n: int) -> list[Row]:
    load = Breakdown()
    return [(WARM_LOAD, repeat(n, lambda: load.timed("load", "hello")), 0.4), *load.rows("3a")]


def kvm_line(accel: str) -> list[str]:
    """What a KVM user would see: measured where KVM runs, else why not."""
    if accel == "kvm":
        return ["- KVM: usable here, so every figure is KVM's"]
    ok, why = probe_kvm(select_kernel())
    state = "usable, but not chosen" if ok else f"not usable here ({why})"
    return [
        f"- KVM: {state}: every figure is TCG's (full emulation). What a KVM user sees"
        " was not measured, and is not guessed here."
    ]


def table(release: str, accel: str, n: int, peer: str, rows: list[Row]) -> list[str]:
    """The file's head and its table of `rows` (name, times, target)."""
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (scripts/bench.py) on {datetime.date.today()}; every figure"
        " below was measured in that run.",
        "",
        f"- machine: {machine()}",
        f"- guest kernel: {release}, accel: {accel}",
        *kvm_line(accel),
        f"- each kdk figure: the median of its runs (`runs`; {n} for most) of the `kdk` command"
        f" (a new process each, except 2b){peer}",
        "",
        "| measure | median | min | max | runs | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, times, target in rows:
        m = statistics.median(times)
        met = "" if target is None else ("yes" if m <= target else "**no**")
        tgt = "" if target is None else f"≤ {target:g} s"
        lines.append(
            f"| {name} | {m:.2f} s | {min(times):.2f} s | {max(times):.2f} s | {len(times)} "
            f"| {tgt} | {met} |"
        )
    return lines


def write(out: Path, lines: list[str]) -> None:
    out.write_text("\n".join([*lines, ""]))
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
