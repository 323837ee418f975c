"""The `kdk` command: a thin layer over kdk.api.Kdk.

Errors from the library (one exception family) are caught once, here, and
turned into one line on stderr and an exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .api import BACKENDS, BootRequest, Kdk, LoadResult
from .errors import KdkError, MissingDependency, UsageError, VMNotRunning
from .kernel import all_kernels
from .klog import kmsg
from .state import DEFAULT_MEMORY_MB, MIN_MEMORY_MB
from .ui import progress, say
from .vm import devices

ACCELS = ("auto", "kvm", "tcg")


def _print_log(records: Sequence[kmsg.Record]) -> None:
    for rec in records:
        print(rec.format())


def _print_result(res: LoadResult) -> None:
    """A load's or unload's kernel log; the kernel's remarks on the VM's
    timing meanwhile go to stderr, said as such."""
    _print_log(res.log)
    for rec in res.timing:
        say(f"the guest kernel, on the VM's timing: {rec.format()}")


def cmd_up(k: Kdk, a: argparse.Namespace) -> int:
    wanted = devices.request(a.device, a.can)
    if a.cpus is not None and a.cpus < 1:
        raise UsageError(f"--cpus {a.cpus}: a guest needs at least one CPU")
    if a.memory is not None and a.memory < MIN_MEMORY_MB:
        raise UsageError(f"--memory {a.memory}: a guest needs at least {MIN_MEMORY_MB} MiB")
    if a.ssh_port is not None and not 0 < a.ssh_port < 65536:
        raise UsageError(f"--ssh-port {a.ssh_port}: not a TCP port (1-65535)")
    req = BootRequest(a.kernel, a.accel, a.ssh_port, a.debug, a.libvirt, wanted, a.cpus, a.memory)
    if a.dry_run:
        print(shlex.join(k.up_command(req, say=say)))
        return 0
    with progress("kdk up") as step:
        rec, booted = k.up(req, say=say, step=step)
    how = f"ready in {rec.ready_seconds:.1f} s" if booted else "already up"
    if a.debug and not rec.debug:
        say("the running VM was booted without --debug: `kdk down` first to get the checks")
    if a.cpus is not None and a.cpus != rec.cpus:
        say(f"the running VM has {cpus(rec.cpus)}: `kdk down` first to get {a.cpus}")
    if a.memory is not None and a.memory != rec.memory_mb:
        say(f"the running VM has {rec.memory_mb} MiB: `kdk down` first to get {a.memory}")
    info = k.status()
    ssh = f"{info['ssh_host']}:{info['ssh_port']}"
    added = f", devices {devices.describe(rec.devices)}" if rec.devices else ""
    vm = machine(rec.accel, rec.cpus, rec.memory_mb)
    say(f"{how}: {vm}, kernel {rec.kernel}, ssh {ssh}{added}")
    return 0


def cpus(n: int) -> str:
    return f"{n} CPU{'s' if n > 1 else ''}"


def machine(accel: str, n_cpus: int, memory_mb: int) -> str:
    """What `kdk up` and `kdk status` say of a VM's machine: "tcg, 2 CPUs, 2048 MiB"."""
    return f"{accel}, {cpus(n_cpus)}, {memory_mb} MiB"


def cmd_down(k: Kdk, a: argparse.Namespace) -> int:
    say("VM stopped" if k.down(destroy=a.destroy) else "the VM was not running")
    if a.destroy:
        say(f"removed what kdk started for the VM ({k.status()['backend']} backend)")
    return 0


def cmd_box(k: Kdk, a: argparse.Namespace) -> int:
    from .vm.box import build_box

    box, built = build_box(k.state, say, a.force)
    say(f"{'built' if built else 'cached'}: {box.name} at {box.path}")
    return 0


def cmd_status(k: Kdk, a: argparse.Namespace) -> int:
    info = k.status()
    if a.json:
        print(json.dumps(info, indent=1))
    elif info["running"]:
        ssh = f"{info['ssh_host']}:{info['ssh_port']}"
        vm = machine(info["accel"], info["cpus"], info["memory_mb"])
        print(f"running: {vm}, kernel {info['kernel']}, ", end="")
        print(f"ssh {ssh}, ", end="")
        print(f"pid {info['pid']}, up {info['uptime']:.0f} s")
        if info["devices"]:
            print(f"devices: {devices.describe(info['devices'])}")
    else:
        print("not running")
    return 0 if info["running"] else 3


def _seconds(option: str, value: float | None, zero: bool = False) -> None:
    """Seconds given on the command line: above 0 (a bound: `--timeout`),
    or 0 too with `zero` (`kdk trace --duration 0`: attach, read the
    counters once, detach)."""
    if value is None or value > 0 or (zero and value == 0):
        return
    what = "0 or more" if zero else "above 0"
    raise UsageError(f"{option} {value:g}: not a number of seconds {what}")


def cmd_exec(k: Kdk, a: argparse.Namespace) -> int:
    if not a.command:
        raise UsageError("nothing to run: kdk exec -- COMMAND [ARG...]")
    _seconds("--timeout", a.timeout)
    return k.run_here(a.command, timeout=a.timeout)


def cmd_ssh(k: Kdk, a: argparse.Namespace) -> int:
    ssh = shutil.which("ssh")
    if ssh is None:
        raise MissingDependency("ssh not found: install the openssh-client package")
    argv = k.ssh_argv(a.command, ssh)
    os.execvp(argv[0], argv)


def cmd_dmesg(k: Kdk, a: argparse.Namespace) -> int:
    if a.follow:
        return k.run_here(["dmesg", "-w"])
    _print_log(k.dmesg())
    return 0


def cmd_build(k: Kdk, a: argparse.Namespace) -> int:
    built = k.build(a.module, kernel=a.kernel, force=a.force)
    if built.output:
        print(built.output, file=sys.stderr)
    if a.verbose:
        say(built.how())
    state = "built" if built.rebuilt else "up to date"
    say(f"{state}: " + " ".join(str(ko) for ko in built.modules))
    return 0


def cmd_load(k: Kdk, a: argparse.Namespace) -> int:
    if a.fail_nth is not None:
        from .modules.faultinject import table

        if a.fail_nth < 1:
            raise UsageError(f"--fail-nth {a.fail_nth}: N counts from 1")
        sweep = k.loader.fault_inject(a.module, a.params, a.fail_nth)
        print(table(sweep))
        return 1 if sweep.failed else 0
    res = k.load(a.module, a.params)
    if res.build is not None and res.build.output:  # the compiler's warnings, as `kdk build`
        print(res.build.output, file=sys.stderr)
    if a.verbose and res.build is not None:
        say(res.build.how())
    if a.verbose and res.needs:
        say(f"{res.name} needs {', '.join(res.needs)}: loaded first (those not loaded yet)")
    _print_result(res)
    if res.tainted:
        say(f"loading {res.name} tainted the kernel: " + ", ".join(res.tainted))
    if a.verbose:
        say("took " + ", ".join(f"{phase} {t:.2f} s" for phase, t in res.times))
    return 0


def cmd_unload(k: Kdk, a: argparse.Namespace) -> int:
    _print_result(k.unload(a.module, a.leaks))
    return 0


def cmd_list(k: Kdk, a: argparse.Namespace) -> int:
    rows = []
    for m in k.modules():
        folder = str(m.path.relative_to(k.project)) if m.path != k.project else "."
        names = m.module_names()
        if len(names) > 1:  # a folder of many modules: each on its own line
            rows.append((folder, f"{len(names)} modules"))
            rows += [(f"  {n}", m.description(n)) for n in names]
        else:
            rows.append((folder, m.description()))
    if not rows:
        say(
            f"no module folders in {k.project} (a Kbuild, or a Makefile naming obj-m): kdk new NAME"
        )
    width = max((len(folder) for folder, _ in rows), default=0)
    for folder, description in rows:
        print(f"{folder:<{width}}  {description}".rstrip())
    return 0


def cmd_new(k: Kdk, a: argparse.Namespace) -> int:
    from .modules.scaffold import new_module

    made = new_module(a.name, k.project, a.char)
    folder = made[0].parent
    say(f"made {folder}: " + ", ".join(p.name for p in made))
    say(f"next: kdk load {folder.name}; kdk test {folder.name}")
    return 0


def cmd_test(k: Kdk, a: argparse.Namespace) -> int:
    from . import testrun

    if a.fault_inject:
        sweeps = testrun.fault_inject(k, a.modules)
        return 1 if any(s.failed for s in sweeps) else 0
    if a.jobs < 1:
        raise UsageError(f"--jobs {a.jobs}: the tests need at least one VM")
    if a.ktap and a.jobs > 1 and not a.kernels:  # pytest-xdist's workers print no summary
        raise UsageError("--ktap prints the KUnit suites of one VM's run: leave out --jobs")
    if a.kernels:
        runs = testrun.run_matrix(k, a.modules, a.kernels, a.junit, a.ktap, a.jobs)
        print(f"\n{testrun.matrix_table(runs)}")
        return next((r.code for r in runs if r.code), 0)
    code, tallies = testrun.run(k, a.modules, a.junit, a.ktap, a.jobs)
    print()
    for t in tallies:
        state = "FAIL" if t.failed else ("ok" if t.passed else "none")
        counts = f"{t.passed} passed, {t.failed} failed, {t.skipped} skipped"
        print(f"{t.name:<12} {state:<4}  {counts}  {t.seconds:6.1f} s")
    return code


def _live(render: Callable[[], str], every: float = 1.0) -> None:
    """Show render()'s text, refreshed every `every` s, until Ctrl-C; on a
    terminal only (in a log, the final table is enough)."""
    if not sys.stdout.isatty():
        while True:
            time.sleep(3600)
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    with Live(Text(render()), console=Console(), auto_refresh=False, transient=True) as live:
        while True:
            time.sleep(every)
            live.update(Text(render()), refresh=True)


def cmd_trace(k: Kdk, a: argparse.Namespace) -> int:
    from .trace import functions as trace

    _seconds("--duration", a.duration, zero=True)
    code = 0
    with k.trace(a.module) as t:
        attach, bcc = t.prog.attach_seconds, t.prog.compile_seconds
        n = len(t.functions) - len(t.skipped)
        say(
            f"tracing {n} functions of {a.module} (probes attached in {attach:.1f} s, "
            f"of which bcc in the guest {bcc:.1f} s)"
        )
        if a.verbose:
            say("took " + ", ".join(f"{phase} {s:.2f} s" for phase, s in t.times))
        try:
            if a.command:
                code = k.exec(
                    a.command, stdout=sys.stdout.buffer, stderr=sys.stderr.buffer
                ).exit_code
            elif a.duration is not None:
                time.sleep(a.duration)
            else:
                say("Ctrl-C ends the trace")
                _live(lambda: trace.format_result(t.snapshot(), a.hist))
        except KeyboardInterrupt:
            pass
        result = t.snapshot(final=True)
    if a.json:
        print(json.dumps(result.as_json(), indent=1))
    else:
        print(trace.format_result(result, a.hist))
    return code


def cmd_wire(k: Kdk, a: argparse.Namespace) -> int:
    _seconds("--duration", a.duration, zero=True)
    info = k.status()
    if not info["running"]:
        raise VMNotRunning("the VM is not up: run `kdk up`")
    if "wire" not in info:
        raise KdkError(f"the {info['backend']} backend's VM has no packet wire")
    print("\n".join(info["wire"]))
    if a.pcap is not None:
        with k.wire(pcap=a.pcap) as w:
            say(f"recording to {a.pcap}" + ("" if a.duration else "; Ctrl-C ends"))
            n = w.record(a.duration)
        say(f"{n} frames from the guest recorded in {a.pcap} (with what was sent)")
    return 0


def cmd_net(k: Kdk, a: argparse.Namespace) -> int:
    from .net import topology

    left = topology.clean(k.guest())
    say(f"removed {len(left)} namespaces: {' '.join(left)}" if left else "no namespaces to remove")
    return 0


def cmd_gdb(k: Kdk, a: argparse.Namespace) -> int:
    return k.gdb(a.module, a.command)


def cmd_inspect(k: Kdk, a: argparse.Namespace) -> int:
    from .modules import inspect

    if a.disasm:
        print(k.loader.disassemble(a.module, a.disasm, a.kernel), end="")
        return 0
    ins = k.loader.inspect(a.module, a.kernel)
    print(json.dumps(ins.as_json(), indent=1) if a.json else inspect.format_text(ins))
    return 0


def cmd_kernel(k: Kdk, a: argparse.Namespace) -> int:
    from .kbuild import build, config

    if a.action == "list":
        rows = [(kern, "built" if kern.built else "installed") for kern in all_kernels()]
        width = max((len(kern.release) for kern, _ in rows), default=4)
        print(f"{'NAME':{width}}  {'KIND':9}  FEATURES")
        for kern, kind in rows:
            try:
                have = ", ".join(config.features(kern.config.read_text())) or "-"
            except OSError:
                have = "(no config file)"
            print(f"{kern.release:{width}}  {kind:9}  {have}")
        return 0
    if a.action == "remove":
        if not a.name:
            raise UsageError("which kernel? kdk kernel remove NAME (see kdk kernel list)")
        say(f"removed {build.remove(a.name)}")
        return 0
    flavour = config.flavour_of(a.debug, a.kcsan)
    p = build.plan(a.source, flavour, a.config, a.jobs, say)
    with progress(f"kdk kernel build {p.release}") as step:
        res = build.build(p, say, step)
    if not res.built:
        say(
            f"{res.kernel.release} is up to date ({p.folder}); boot it: kdk up --kernel "
            f"{res.kernel.release}"
        )
        return 0
    say(
        f"built {res.kernel.release} in {res.seconds / 60:.1f} min ({res.compiled} files "
        f"compiled, {res.cpu_seconds / 60:.1f} CPU-min) in {p.folder}; boot it: "
        f"kdk up --kernel {res.kernel.release}"
    )
    return 0


def parser() -> argparse.ArgumentParser:
    """The argument parser (a function, so docs and completion can use it)."""
    p = argparse.ArgumentParser(
        prog="kdk",
        description="Build, load and watch Linux kernel modules in a throw-away VM.",
        epilog="Start with: kdk up && kdk load hello",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="say what kdk does (e.g. which make ran, with its argv)",
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def add(
        name: str, func: Callable[[Kdk, argparse.Namespace], int], help: str
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=func)
        sp.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            default=argparse.SUPPRESS,
            help="say what kdk does (e.g. which make ran, with its argv)",
        )
        return sp

    up = add("up", cmd_up, "boot the VM in the background; returns when it is ready")
    up.add_argument(
        "--kernel",
        help="kernel release or /boot/vmlinuz-* path, a kernel kdk built (kdk kernel list), "
        "debug: the newest debug build (default: the distribution's)",
    )
    up.add_argument(
        "--accel", choices=ACCELS, default="auto", help="KVM, TCG emulation, or probe (default)"
    )
    up.add_argument(
        "--ssh-port", type=int, help="host port for the guest's sshd (default: a free one)"
    )
    up.add_argument(
        "--debug", action="store_true", help="with the allocator's checks (slub_debug, page_poison)"
    )
    up.add_argument(
        "--cpus",
        type=int,
        metavar="N",
        help="the guest's CPUs (default: 2; under emulation each is a host thread)",
    )
    up.add_argument(
        "--memory",
        type=int,
        metavar="MiB",
        help=f"the guest's memory (default: {DEFAULT_MEMORY_MB}; with --debug, page "
        "poisoning at boot takes time in proportion to it)",
    )
    up.add_argument(
        "--backend",
        choices=BACKENDS,
        help="qemu (the host's kernel and root) or vagrant (kdk's box, its own kernel); "
        "remembered by the VM (default: the remembered one, else qemu)",
    )
    up.add_argument(
        "--libvirt",
        metavar="kdk|URI[,netns=NS]",
        help="vagrant: kdk (its own libvirtd in a namespace it makes; the default) or "
        "your running libvirt, used as it is: URI (qemu:///system) and the network "
        "namespace its networks live in (default: the host's); remembered by the VM",
    )
    up.add_argument(
        "--device",
        action="append",
        default=[],
        metavar="SPEC",
        help="add an emulated device: a QEMU -device spec (edu, kvaser_pci,canbus=ID...); "
        "repeat for several",
    )
    up.add_argument(
        "--can",
        type=int,
        default=0,
        metavar="N",
        help=f"a CAN bus with N {devices.CAN_CONTROLLER} controllers (can0...), drivers loaded",
    )
    up.add_argument(
        "--dry-run", action="store_true", help="print the QEMU command line, boot nothing"
    )
    down = add("down", cmd_down, "stop the VM (nothing in it is kept)")
    down.add_argument(
        "--destroy",
        action="store_true",
        help="also remove what kdk started for it (Vagrant: domain, volumes, "
        "pool; kdk's own libvirt's daemons and namespace)",
    )
    box = add("box", cmd_box, "build kdk's Vagrant box (cached; says where)")
    box.add_argument("action", choices=["build"], help="build (unless cached)")
    box.add_argument("--force", action="store_true", help="build even if cached")
    st = add(
        "status",
        cmd_status,
        "is the VM running: accel, CPUs, memory, kernel, ssh port, pid, uptime",
    )
    st.add_argument("--json", action="store_true", help="machine-readable output")
    ex = add("exec", cmd_exec, "run a command in the guest; its exit code is kdk's")
    ex.add_argument("--timeout", type=float, help="give up after this many seconds")
    ex.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    sh = add("ssh", cmd_ssh, "interactive shell (or a command) in the guest over ssh")
    sh.add_argument("command", nargs=argparse.REMAINDER, help="optional command for ssh")
    dm = add("dmesg", cmd_dmesg, "the guest's kernel log")
    dm.add_argument("-f", "--follow", action="store_true", help="wait for new messages")
    for name, func, help in (
        ("build", cmd_build, "build a module for the guest's kernel (only if sources changed)"),
        ("load", cmd_load, "build if needed, insmod (reloading), print the log lines it produced"),
        ("unload", cmd_unload, "rmmod, print the log lines it produced"),
    ):
        sp = add(name, func, help)
        sp.add_argument(
            "module",
            help="a module folder's or a module's name, a folder (. is this one), or a .ko file",
        )
        if name == "build":
            sp.add_argument("--kernel", help="kernel release when the VM is not up")
            sp.add_argument("--force", action="store_true", help="build even if nothing changed")
        if name == "load":
            # (a default: argparse takes a "*" positional without one as required)
            sp.add_argument("params", nargs="*", default=[], help="module parameters, name=value")
            sp.add_argument(
                "--fail-nth",
                type=int,
                metavar="N",
                help="fail the N-th allocation of the module's init (a debug kernel's "
                "fault injection); say where and what the load returned",
            )
        if name == "unload":
            sp.add_argument(
                "--leaks",
                action="store_true",
                help="first report the objects it leaked (kmemleak: a --debug kernel; ~25 s)",
            )
    add("list", cmd_list, "the module folders of the project and their modules")
    nw = add("new", cmd_new, "make a new module folder: Kbuild, Makefile, commented C, a test")
    nw.add_argument("name", help="the module's name (also a path: the folder to make)")
    nw.add_argument("--char", action="store_true", help="a character device with read/write")
    tr = add(
        "trace",
        cmd_trace,
        "calls and latency of every function of a loaded module (bcc); "
        "kdk trace MODULE [options] [-- WORKLOAD...]",
    )
    tr.add_argument("module", help="a loaded module")
    tr.add_argument("--duration", type=float, metavar="S", help="trace for S seconds")
    tr.add_argument("--json", action="store_true", help="machine-readable summary")
    tr.add_argument("--hist", action="store_true", help="log2 latency histograms too")
    tr.set_defaults(command=[])  # what follows `--`: a workload to run while tracing
    wi = add("wire", cmd_wire, "the packet wire into the guest: both ends' addresses, owner")
    wi.add_argument("--pcap", type=Path, metavar="FILE", help="record the guest's frames here")
    wi.add_argument("--duration", type=float, metavar="S", help="record for S seconds")
    nt = add("net", cmd_net, "network namespaces kdk made in the guest: `kdk net clean`")
    nt.add_argument("action", choices=["clean"], help="clean: remove every one of them")
    gd = add(
        "gdb",
        cmd_gdb,
        "gdb on the running guest kernel, with a loaded module's symbols: "
        "kdk gdb [MODULE] [-- GDB ARGS...]",
    )
    gd.add_argument("module", nargs="?", help="a module kdk loaded (its symbols at its addresses)")
    gd.set_defaults(command=[])  # what follows `--`: gdb's own arguments
    ins = add(
        "inspect",
        cmd_inspect,
        "what a module's .ko holds (sections, functions, data, "
        "modinfo) and the kernel symbols it needs; on the host, before any load",
    )
    ins.add_argument("module", help="name, folder or .ko file (built first if needed)")
    ins.add_argument("--json", action="store_true", help="machine-readable output")
    ins.add_argument("--disasm", metavar="FUNC", help="only FUNC's disassembly, with source lines")
    ins.add_argument("--kernel", help="kernel release to check against when the VM is not up")
    ke = add(
        "kernel",
        cmd_kernel,
        "kernels kdk builds into your cache: kdk kernel build "
        "[--debug|--kcsan] [--source PATH] [--config FRAGMENT]..., list, remove NAME",
    )
    ke.add_argument("action", choices=["build", "list", "remove"])
    ke.add_argument("name", nargs="?", help="remove: the built kernel's name (kdk kernel list)")
    ke.add_argument(
        "--debug",
        action="store_true",
        help="with KASAN, lockdep, kmemleak, UBSAN, fault injection and KUnit",
    )
    ke.add_argument("--kcsan", action="store_true", help="with KCSAN (a build of its own)")
    ke.add_argument(
        "--source",
        type=Path,
        metavar="PATH",
        help="a kernel tree of yours (default: Debian's linux-source-6.1)",
    )
    ke.add_argument(
        "--config",
        type=Path,
        action="append",
        default=[],
        metavar="FRAGMENT",
        help="a config fragment of yours, merged last (repeatable)",
    )
    ke.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=os.cpu_count() or 1,
        help="make's jobs (default: the number of CPUs)",
    )
    te = add("test", cmd_test, "run the tests of modules/drivers (default: all) in the running VM")
    te.add_argument(
        "modules",
        nargs="*",
        metavar="NAME",
        help="module or driver names (with --fault-inject, each may be followed by "
        "PARAM=VALUE words: its loads' parameters)",
    )
    te.add_argument("--junit", type=Path, metavar="FILE", help="also write JUnit XML here")
    te.add_argument("--ktap", action="store_true", help="print the KTAP of the KUnit suites run")
    te.add_argument(
        "--fault-inject",
        action="store_true",
        help="instead: fail each allocation of each module's init in turn (default: every "
        "module of the project but those under tests/; a debug kernel), check each error "
        "path, a table each",
    )
    te.add_argument(
        "--kernel",
        dest="kernels",
        action="append",
        default=[],
        metavar="K",
        help="on kernel K (a release or a prefix: 6.12) in a VM of its own, "
        "not the running one; repeat for several; a module x kernel table "
        "ends the output",
    )
    te.add_argument(
        "--kernels",
        dest="kernels",
        action="extend",
        type=lambda s: s.split(","),
        metavar="K,K|all",
        help="several at once; all: every installed kernel with headers and every kernel kdk built",
    )
    te.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="N VMs at once, test files shared out among them: VMs of the running "
        "VM's kernel, booted and stopped by the run, the host's cores shared out "
        "among them (with --kernels: N kernels at once)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `kdk` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    workload: list[str] = []
    if argv[:1] in (["trace"], ["gdb"]) and "--" in argv:  # options may follow the module
        cut = argv.index("--")
        argv, workload = argv[:cut], argv[cut + 1 :]
    args = parser().parse_args(argv)
    if args.cmd in ("trace", "gdb"):
        args.command = workload
    elif getattr(args, "command", None) and args.command[:1] == ["--"]:
        args.command = args.command[1:]

    try:
        return int(args.func(Kdk(say=say, backend=getattr(args, "backend", None)), args))
    except KdkError as e:
        if e.details:
            print(e.details, file=sys.stderr)
        print(f"kdk: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `kdk dmesg | head`
        sys.stderr.close()
        return 141


if __name__ == "__main__":
    sys.exit(main())
