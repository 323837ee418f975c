"""The QEMU backend: the guest boots the host's own kernel and root.

The host's `/` is shared read-only over 9p and the guest writes into a
tmpfs overlay; the project folder is shared read-write at its host path, so
a module built on the host is at once visible in the guest. sshd in the
guest is reached through QEMU's user network on a free 127.0.0.1 port.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BootFailed, KdkError, MissingDependency
from ..guest import mux
from ..guest.ssh import Endpoint, Guest
from ..kernel import Kernel, select_kernel
from ..klog import oops
from ..make import Make
from ..state import (
    CLIENT_KEY,
    CMDLINE_FILE,
    DEFAULT_CPUS,
    DEFAULT_MEMORY_MB,
    GDB_SOCKET,
    HOST_KEY,
    PID_FILE,
    StateDir,
    VMRecord,
    gdb_holder,
    process_alive,
)
from . import devices, link
from .backend import Backend, BootRequest
from .initramfs import initramfs
from .vmlinux import extract_vmlinux

QEMU = "qemu-system-x86_64"
READY_MARK = b"kdk-ready"
FAIL_MARK = re.compile(rb"^kdk-failed: (.*)$", re.M)  # the guest's setup says why it stopped
BOOT_TIMEOUT = 180.0  # TCG on a busy 2-core CI machine is slow
STALLED = 90.0  # a first boot not ready by then is booted again (ready in 4-25 s)
PROBE_TIMEOUT = 3.0
# eth0, the NIC QEMU forwards the ssh port to: QEMU's default MAC, pinned
# (the init addresses eth0; the wire, eth1, has its own: kdk.vm.link)
SSH_NIC_MAC = "52:54:00:12:34:56"
# No default devices, config files, display or reboot: only what kdk adds.
BARE = ("-nodefaults", "-no-user-config", "-display", "none", "-no-reboot")
SHARE_OPTIONS = "security_model=none,multidevs=remap"
# The guest mounts the host's root without a page cache, so that a file
# made on the host is seen by the next command. These big read-only trees
# are mounted with one (9p cache=loose): bcc reads thousands of files of
# the kernel headers and of clang's for every compile, and each python3 in
# the guest hundreds of the standard library's and of Debian's packages
# (scapy's import again in a boot: 2.1 s against 2.8 s under TCG). Only the
# package manager changes them, and it rewrites STAMP each time: the guest
# then drops what it cached (see the init), within a second.
CACHED_TREES = ("/usr/src", "/usr/lib/llvm-*", "/usr/lib/python3", "/usr/lib/python3.*")
STAMP = Path("/var/lib/dpkg/status")
# The slab caches left unmarked for failslab on a kernel kdk built (see
# slub_debug): their allocations come on some module loads only (see
# kdk/inguest/fail_nth.py, which looks for the parameter).
UNMARKED = "vmap_area,page->ptl,radix_tree_node,kmemleak_object"


def shared_cpus(vms: int) -> int:
    """The CPUs each of `vms` VMs running at once gets, so that together
    they do not outnumber the cores this process may use."""
    return max(1, len(os.sched_getaffinity(0)) // vms)


@dataclass(frozen=True)
class QemuConfig:
    """Everything that decides a QEMU command line."""

    kernel: Kernel  # the guest kernel (its headers build the modules)
    boot_image: Path  # what QEMU boots: the bare vmlinux (PVH) or the bzImage
    initrd: Path  # kdk's initramfs for that kernel
    project: Path  # shared read-write at the same path in the guest
    state: Path  # the VM's state folder (keys, console log, pid file)
    accel: str  # "kvm" or "tcg"
    ssh_port: int  # host side of the forwarded guest port 22, on 127.0.0.1
    memory_mb: int = DEFAULT_MEMORY_MB
    cpus: int = DEFAULT_CPUS
    debug: bool = False  # the allocator's own checks on (kdk up --debug)
    cached: tuple[Path, ...] = ()  # host trees the guest mounts with a page cache
    stamp: Path | None = None  # rewritten when they change (STAMP)
    devices: tuple[str, ...] = ()  # emulated devices added (QEMU -device specs)


def kernel_cmdline(cfg: QemuConfig) -> str:
    """The guest kernel's command line."""
    return " ".join(
        [
            "console=ttyS0",
            "rdinit=/init",
            "loglevel=5",  # the console (kdk's crash detector) gets warnings and worse
            "oops=panic",  # an oops leaves a kernel in doubt: kdk boots a fresh one
            "softlockup_panic=1",
            "watchdog_thresh=5",  # a soft lockup is declared after 10 s, not 20
            "panic=-1",  # reboot at once on panic; -no-reboot then ends QEMU
            "mitigations=off",
            "nokaslr",  # stable addresses in oops reports
            "i8042.noaux",
            "i8042.nokbd",
            "tsc=reliable",
            "no_timer_check",
            "acpi=noirq",  # IRQ routing from the BIOS table: ACPI's costs 0.13 s a device under TCG
            "cryptomgr.notests",  # no self-tests of the crypto algorithms: 0.25-0.4 s of a TCG boot
            f"kdk.project={cfg.project}",
            f"kdk.state={cfg.state}",
            *([f"kdk.cached={','.join(map(str, cfg.cached))}"] if cfg.cached else []),
            *([f"kdk.stamp={cfg.stamp}"] if cfg.cached and cfg.stamp else []),
            link.WIRE.cmdline(),  # the packet wire's addresses (kdk/vm/link.py)
            *slub_debug(cfg.kernel, cfg.debug),
            *(debug_cmdline(cfg.kernel) if cfg.debug else ()),
            *built_cmdline(cfg.kernel),
            *kunit_cmdline(cfg.kernel),
        ]
    )


def slub_debug(kernel: Kernel, debug: bool) -> list[str]:
    """The one slub_debug= (the kernel keeps the last it is given): with
    `debug`, SLUB's checks (see debug_cmdline); on a kernel kdk built with
    failslab, every cache marked for it (A) but UNMARKED, so that a
    fault-injection sweep counts the same points on every load."""
    flags = "FZPU" if debug and kernel.enabled("CONFIG_SLUB_DEBUG") else ""
    if kernel.built and kernel.enabled("CONFIG_FAILSLAB"):
        return [f"slub_debug={flags}A;-,{UNMARKED}"]
    return [f"slub_debug={flags}"] if flags else []


def built_cmdline(kernel: Kernel) -> list[str]:
    """What a kernel kdk built adds: where its modules are (the guest binds
    them at /lib/modules/<release>), and with KASAN every report of a boot,
    not only the first (kasan_multi_shot)."""
    if not kernel.built:
        return []
    kasan = kernel.enabled("CONFIG_KASAN")
    return [f"kdk.moddir={kernel.modules_dir}", *(["kasan_multi_shot"] if kasan else [])]


def kunit_cmdline(kernel: Kernel) -> list[str]:
    """With KUnit, KUnit enabled: a kernel without KUNIT_DEFAULT_ENABLED
    (kdk's debug build) runs no suite unless booted with kunit.enable=1
    (a boot parameter only), and a test module's load says "kunit: disabled"."""
    return ["kunit.enable=1"] if kernel.enabled("CONFIG_KUNIT") else []


def boot_budget(kernel: Kernel) -> tuple[float, float]:
    """(STALLED, BOOT_TIMEOUT) for `kernel`: twice as long for a kernel
    with KASAN, lockdep or KCSAN, which boots 2-3 times slower under TCG."""
    checks = ("CONFIG_KASAN", "CONFIG_PROVE_LOCKING", "CONFIG_KCSAN")
    slow = any(kernel.enabled(option) for option in checks)
    return (STALLED * 2, BOOT_TIMEOUT * 2) if slow else (STALLED, BOOT_TIMEOUT)


def built_trees(kernel: Kernel) -> tuple[Path, ...]:
    """A built kernel's folder (build tree, modules) and its source tree,
    which the guest mounts at their host paths (cached: bcc reads their
    headers through /lib/modules/<release>/build and source)."""
    if not kernel.built:
        return ()
    trees = [kernel.image.parent, (kernel.modules_dir / "source").resolve()]
    return tuple(t for t in trees if t.is_dir() and not re.search(r"[\s,]", str(t)))


def debug_cmdline(kernel: Kernel) -> list[str]:
    """What `kdk up --debug` adds to the kernel command line: the checks the
    kernel was built with that a boot parameter turns on (KASAN, lockdep and
    kmemleak need a kernel built with them). slub_debug (see slub_debug):
    sanity checks (F), red zones (Z), poisoning (P) and who allocated and
    freed each object (U), on every slab cache; page_poison: freed pages are poisoned and checked
    when allocated again; KFENCE (Debian 6.12, not 6.1): guarded sampled
    objects, one every 100 ms."""
    wanted = [
        ("CONFIG_PAGE_POISONING", "page_poison=1"),
        ("CONFIG_KFENCE", "kfence.sample_interval=100"),
    ]
    return [param for option, param in wanted if kernel.enabled(option)]


def gdb_stub(state: Path) -> list[str]:
    """QEMU's gdb stub on a unix socket in the state folder, waiting for no
    one, so gdb can attach to any running VM; none when the path is longer
    than a unix socket address allows."""
    path = state / GDB_SOCKET
    if len(str(path)) >= 108:
        return []
    return ["-chardev", f"socket,id=gdb0,path={path},server=on,wait=off", "-gdb", "chardev:gdb0"]


def cached_trees(patterns: tuple[str, ...] = CACHED_TREES) -> tuple[Path, ...]:
    """The host folders among `patterns` (globs) that exist, in order."""
    found = (Path(p) for pattern in patterns for p in sorted(glob.glob(pattern)))
    return tuple(p for p in found if p.is_dir() and not re.search(r"[\s,]", str(p)))


def cached_shares(trees: tuple[Path, ...]) -> list[str]:
    """The cached trees' one read-only 9p share, tagged kdkcache: the host
    root again, which the guest mounts with a page cache and binds each
    tree of kdk.cached= from (a device each cost ~0.04 s of the boot)."""
    if not trees:
        return []
    return [
        "-fsdev",
        f"local,id=cache,path=/,readonly=on,{SHARE_OPTIONS}",
        "-device",
        "virtio-9p-pci,fsdev=cache,mount_tag=kdkcache",
    ]


def qemu_argv(cfg: QemuConfig) -> list[str]:
    """The QEMU command line for `cfg`, as an argv list."""
    share = SHARE_OPTIONS
    return [
        QEMU,
        "-name",
        "kdk",
        "-machine",
        f"pc,accel={cfg.accel}",
        "-cpu",
        "host" if cfg.accel == "kvm" else "max",
        "-smp",
        str(cfg.cpus),
        "-m",
        str(cfg.memory_mb),
        *BARE,
        "-kernel",
        str(cfg.boot_image),
        "-initrd",
        str(cfg.initrd),
        "-append",
        kernel_cmdline(cfg),
        "-chardev",
        f"file,id=console,path={cfg.state / 'console.log'}",
        "-serial",
        "chardev:console",
        "-fsdev",
        f"local,id=hostroot,path=/,readonly=on,{share}",
        "-device",
        "virtio-9p-pci,fsdev=hostroot,mount_tag=kdkroot",
        "-fsdev",
        f"local,id=project,path={cfg.project},{share}",
        "-device",
        "virtio-9p-pci,fsdev=project,mount_tag=kdkproject",
        "-fsdev",
        f"local,id=state,path={cfg.state},{share}",
        "-device",
        "virtio-9p-pci,fsdev=state,mount_tag=kdkstate",
        *cached_shares(cfg.cached),
        "-netdev",
        f"user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{cfg.ssh_port}-:22",
        "-device",
        f"virtio-net-pci,netdev=net0,mac={SSH_NIC_MAC},romfile=",
        *link.qemu_netdev(cfg.state),
        *devices.qemu_args(cfg.devices),
        "-pidfile",
        str(cfg.state / PID_FILE),
        "-daemonize",
        *gdb_stub(cfg.state),
    ]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as QEMU's hostfwd does
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def probe_kvm(kernel: Kernel, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    """Whether a KVM guest really runs here, and why not when it does not.

    /dev/kvm can exist and still hang or fail on MSRs (as on nested cloud
    machines), so the probe boots the real kernel with the real CPU model
    and waits for its first console line.
    """
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    with tempfile.TemporaryDirectory(prefix="kdk-probe-") as tmp:
        out = Path(tmp, "serial")
        argv = [
            QEMU,
            "-machine",
            "pc,accel=kvm",
            "-cpu",
            "host",
            "-m",
            "256",
            *BARE,
            "-kernel",
            str(kernel.image),
            "-append",
            "earlyprintk=ttyS0 panic=-1",
            "-serial",
            f"file:{out}",
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if out.exists() and b"Linux version" in out.read_bytes():
                    return True, ""
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                    return False, _qemu_reason(err) if err else "QEMU exited"
                time.sleep(0.05)
            return False, f"a KVM guest printed nothing within {timeout:g} s"
        finally:
            proc.kill()
            proc.wait()


def _qemu_reason(stderr: str) -> str:
    """QEMU's last error line without its program and source-file prefixes."""
    return re.sub(r"^\S+: (\S+:\d+: )?", "", stderr.splitlines()[-1])


def host_boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def choose_accel(requested: str, kernel: Kernel, cache: Path, say: Callable[[str], None]) -> str:
    """'kvm' or 'tcg' for `requested` ('kvm', 'tcg' or 'auto').

    'auto' probes KVM once per host boot (the answer is cached in `cache`);
    falling back to TCG is said in one line.
    """
    if requested == "tcg":
        return "tcg"
    boot = host_boot_id()
    try:
        cached = json.loads(cache.read_text())
    except (OSError, ValueError):
        cached = {}
    if boot and cached.get("boot_id") == boot and cached.get("kernel") == kernel.release:
        ok, why = bool(cached["kvm"]), str(cached.get("why", ""))
    else:
        ok, why = probe_kvm(kernel)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(
            json.dumps({"boot_id": boot, "kernel": kernel.release, "kvm": ok, "why": why}) + "\n"
        )
    if ok:
        return "kvm"
    if requested == "kvm":
        raise KdkError(f"KVM is not usable: {why}")
    say(f"KVM is not usable ({why}); using TCG emulation")
    return "tcg"


class QemuBackend(Backend):
    """Boots, reaches and stops the QEMU guest of one state folder."""

    name = "qemu"
    boots_with = "kdk up"

    def __init__(self, project: Path, state_root: Path, vm: str = "default") -> None:
        self.project = project
        self.state_root = state_root
        self.state = StateDir(state_root / "vms" / vm)

    # -- status ---------------------------------------------------------
    def record(self) -> VMRecord | None:
        """The running VM's record; a dead VM's leftovers are cleared."""
        return self.state.running()

    def endpoint(self, rec: VMRecord) -> Endpoint:
        return Endpoint(
            "127.0.0.1",
            rec.ssh_port,
            "root",
            self.state.file(CLIENT_KEY),
            self.state.file(HOST_KEY + ".pub"),
        )

    def guest(self) -> Guest:
        """A (not yet connected) SSH connection to the running guest."""
        rec = self.require()
        ep, state = self.endpoint(rec), self.state.path
        return Guest(
            ep,
            lambda: self.state.alive(rec),
            lambda: gdb_holder(state) is not None,
            lambda command, what: mux.start(ep, state, command, what),
        )

    # -- building for the guest -------------------------------------------
    def build_target(self, rec: VMRecord, guest: Callable[[], Guest]) -> tuple[Kernel, Make | None]:
        """The guest runs a host kernel: modules build on the host."""
        return select_kernel(rec.kernel), None

    def symbols_dir(self, kernel: Kernel, guest: Callable[[], Guest]) -> Path:
        return kernel.build_dir

    # -- up -------------------------------------------------------------
    def up(
        self, req: BootRequest, say: Callable[[str], None], step: Callable[[str], None]
    ) -> tuple[VMRecord, bool]:
        """Boot the VM unless it runs; returns its record and whether it was
        booted now. `say` prints a line, `step` names the step in progress.

        One `up` at a time per state folder: a second one waits for the
        first (bounded) and then finds the VM running."""
        _qemu_only(req)
        return self._boot(req, say, step, None)

    def replace(self, rec: VMRecord, say: Callable[[str], None]) -> VMRecord:
        """Stop the VM of `rec` if it still runs and boot it again with the
        same kernel, accel, port and checks."""
        again = BootRequest(
            rec.kernel,
            rec.accel,
            rec.ssh_port,
            rec.debug,
            devices=rec.devices,
            cpus=rec.cpus,
            memory_mb=rec.memory_mb,
        )
        return self._boot(again, say, lambda _: None, rec)[0]

    def _boot(
        self,
        req: BootRequest,
        say: Callable[[str], None],
        step: Callable[[str], None],
        replace: VMRecord | None,
    ) -> tuple[VMRecord, bool]:
        with self.state.lock(2 * BOOT_TIMEOUT + 30):  # the longest boot_budget
            rec = self.record()
            if rec is not None and replace is not None and rec.pid == replace.pid:
                self.down()
                rec = None
            if rec is not None:
                devices.require(req.devices, rec.devices)
                return rec, False
            cfg = self.config(req, say, step)
            link.prepare(self.state.path)  # not in a dry run: a running VM's wire
            step("boot")
            stalled, timeout = boot_budget(cfg.kernel)
            for attempt in (1, 2):
                cfg, started, pid = self._launch(cfg)
                failed = self._wait_ready(pid, stalled if attempt == 1 else timeout - stalled)
                if not failed:
                    break
                # Seen once in many boots each: a kernel that printed nothing
                # more after its first second (the next boot came up), and a
                # VM that stopped while booting (6.12, replacing a crashed VM
                # in CI; its console was not kept).
                if attempt == 1:
                    say(
                        f"{failed} (its console: {self.state.previous_console_log}); "
                        "booting it once more"
                    )
            else:
                raise BootFailed(f"{failed}; see {self.state.console_log}")
            ready = time.time() - started
            rec = VMRecord(
                self.name,
                pid,
                cfg.ssh_port,
                cfg.kernel.release,
                cfg.accel,
                started,
                ready,
                cfg.debug,
                cfg.devices,
                cfg.cpus,
                cfg.memory_mb,
            )
            self.state.write(rec)
            mux.start_master(self.endpoint(rec), self.state.path)  # for `kdk exec`s to come
            return rec, True

    def dry_run(self, req: BootRequest, say: Callable[[str], None]) -> list[str]:
        """The QEMU command `up` would run now (nothing is started)."""
        _qemu_only(req)
        return qemu_argv(self.config(req, say, lambda _: None))

    def config(
        self, req: BootRequest, say: Callable[[str], None], step: Callable[[str], None]
    ) -> QemuConfig:
        """What `up` would boot: checks what it needs, prepares the state
        folder, the cached initramfs and kernel, and chooses accel and port;
        `req.debug` turns the allocator's checks on (debug_cmdline)."""
        kernel = select_kernel(req.kernel)
        for path in (self.project, self.state.path):
            if any(c.isspace() for c in str(path)):
                raise KdkError(f"{path}: kdk cannot share a path with white space into the guest")
        if shutil.which(QEMU) is None:
            raise MissingDependency(f"{QEMU} not found: install the qemu-system-x86 package")
        if not os.access(kernel.image, os.R_OK):
            raise MissingDependency(f"cannot read {kernel.image} (run kdk as a user who can)")
        self.state.ensure_keys()
        self.state.stage_guest_files()
        cache = self.state_root / "cache"
        try:
            step("initramfs")
            initrd = initramfs(kernel, cache, devices.guest_modules(req.devices))
            step("kernel")
            # A kernel kdk built boots from its bzImage: the debug build's bare
            # vmlinux (PVH entry) stopped QEMU at once, with nothing on the console.
            boot_image = (
                kernel.image
                if kernel.built
                else extract_vmlinux(kernel.image, cache) or kernel.image
            )
        except OSError as e:  # e.g. a full disk, an unreadable module
            raise BootFailed(f"cannot prepare the guest's boot files in {cache}: {e}") from None
        accel = choose_accel(req.accel, kernel, self.state_root / "cache" / "accel.json", say)
        ssh_port = req.ssh_port
        if ssh_port is not None and not port_free(ssh_port):
            say(f"port {ssh_port} on 127.0.0.1 is in use; taking another")
            ssh_port = None
        return QemuConfig(
            kernel,
            boot_image,
            initrd,
            self.project,
            self.state.path,
            accel,
            ssh_port or free_port(),
            memory_mb=req.memory_mb or DEFAULT_MEMORY_MB,
            cpus=req.cpus or DEFAULT_CPUS,
            debug=req.debug,
            cached=cached_trees() + built_trees(kernel),
            stamp=STAMP if STAMP.is_file() else None,
            devices=req.devices,
        )

    def _start(self, cfg: QemuConfig) -> bool:
        """Start QEMU in the background, keeping its command line in the
        state folder; False when its port was taken."""
        log = self.state.console_log
        if log.exists() and log.stat().st_size:  # keep the last boot's (a crash's) log
            log.replace(self.state.previous_console_log)
        log.write_bytes(b"")
        argv = qemu_argv(cfg)
        self.state.file(CMDLINE_FILE).write_text(shlex.join(argv) + "\n")
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        if proc.returncode == 0:
            return True
        err = proc.stderr.strip()
        if "host forwarding" in err:
            return False
        raise BootFailed(f"QEMU failed: {err.splitlines()[-1] if err else proc.returncode}")

    def _launch(self, cfg: QemuConfig) -> tuple[QemuConfig, float, int]:
        """Start QEMU, on another port when `cfg`'s was taken meanwhile;
        (the config it runs with, time.time() when started, its pid)."""
        for _attempt in range(3):
            started = time.time()
            if self._start(cfg):
                return cfg, started, int(self.state.file(PID_FILE).read_text())
            cfg = dataclasses.replace(cfg, ssh_port=free_port())
        raise BootFailed("QEMU could not forward any free port")

    def _wait_ready(self, pid: int, within: float) -> str:
        """Wait up to `within` s for the guest's ready line on the console
        (its init prints it once sshd listens): '' when it came, else why
        not, with QEMU stopped. BootFailed for the line saying why the guest
        cannot be ready."""
        marker = str(self.state.path)
        deadline = time.monotonic() + within
        while READY_MARK not in (console := self.state.console_log.read_bytes()):
            if failed := FAIL_MARK.search(console):
                _kill(pid, marker)
                why = failed.group(1).decode(errors="replace").strip()
                raise BootFailed(f"the guest is not ready: {why}; see {self.state.console_log}")
            if not process_alive(pid, marker):
                crashes = oops.parse(console.decode(errors="replace"))
                said = f": {crashes[-1].headline}" if crashes else ""
                return f"the VM stopped while booting{said}"
            if time.monotonic() > deadline:
                _kill(pid, marker)
                return f"the guest was not ready after {within:g} s"
            time.sleep(0.01)  # the console is a few KiB: read again often
        return ""

    # -- down -----------------------------------------------------------
    def down(self) -> bool:
        """Stop QEMU; False if it was not up. Nothing in the guest needs a
        shutdown: its writable layer is a tmpfs that goes with it, and its
        writes to the project folder reached the host when they were made
        (the 9p share has no cache)."""
        rec = self.record()
        if rec is None:
            return False
        _kill(rec.pid, str(self.state.path))
        self.state.clear()
        return True

    def destroy(self) -> bool:
        """As `down`: the VM's state folder is all kdk made for it, and the
        keys in it are kept for the next VM."""
        return self.down()

    def details(self) -> dict[str, Any]:
        """The packet wire into the guest: its ends, sockets and owner."""
        return {"wire": link.describe(self.state.path)}


def _qemu_only(req: BootRequest) -> None:
    """Refuse what only the Vagrant backend does, running or not."""
    if req.libvirt is not None:
        raise KdkError("--libvirt is for the vagrant backend: QEMU is started by kdk itself")


def _kill(pid: int, marker: str) -> None:
    """SIGTERM (QEMU exits at once; SIGCONT wakes a stopped one to see it),
    then SIGKILL after a second; done when the process (with `marker` in its
    command line) is gone or a zombie."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            return
        for _ in range(200):  # QEMU ends within ~20 ms of SIGTERM: looked for often
            if not process_alive(pid, marker):
                return
            time.sleep(0.005)
