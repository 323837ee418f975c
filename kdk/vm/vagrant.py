"""The Vagrant backend: a guest with its own root and kernel (kdk's box),
brought up by the `vagrant` CLI with the repository's Vagrantfile.

The libvirt it uses is kdk's own, confined to a network namespace kdk
creates, or the user's when they say so (kdk.vm.libvirt). `vagrant` runs in
the namespace of that libvirt's networks (the guest's address exists only
there); kdk reaches the guest's sshd with a socket opened in it, as
`vagrant ssh-config` describes, logged in as root with the box's key.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import BootFailed, KdkError
from ..guest.ssh import Endpoint, Guest
from ..kernel import BOOT, MODULES, Kernel
from ..make import BUILD_TIMEOUT, Make
from ..state import (
    DEFAULT_CPUS,
    DEFAULT_MEMORY_MB,
    HOST_ALIAS,
    KNOWN_HOSTS,
    StateDir,
    VMRecord,
    process_alive,
)
from . import box as boxes
from .backend import Backend, BootRequest
from .libvirt import (
    ETC,
    KDK,
    Libvirt,
    LibvirtAt,
    parse_libvirt,
    read_pid,
    remember,
    remembered,
    run,
)

VAGRANTFILE = Path(__file__).resolve().parents[2] / "Vagrantfile"
VAGRANT_TIMEOUT = 600.0
HALT_TIMEOUT = 45.0  # a clean poweroff; then the domain is stopped by force
INFO = "vagrant.json"  # in the VM's state folder: the guest's address and key
HOST_KEY_PUB = "vagrant_host_key.pub"
MADE_FROM = "vagrant_made_from.pub"  # the host key of the box the VM's disk was made from
LOG = "vagrant.log"  # everything the vagrant CLI printed


def parse_ssh_config(text: str) -> dict[str, str]:
    """`vagrant ssh-config`'s options of its (single) host, by lower-case name."""
    opts: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and value:
            opts.setdefault(key.lower(), value.strip().strip('"'))
    return opts


class VagrantBackend(Backend):
    """Brings up, reaches and stops the Vagrant guest of one state folder."""

    name = "vagrant"
    boots_with = "kdk up --backend vagrant"

    def __init__(self, project: Path, state_root: Path, vm: str = "default") -> None:
        self.project = project
        self.state_root = state_root
        self.state = StateDir(state_root / "vms" / vm)
        self.libvirt = Libvirt(remembered(self.state.path))  # kdk up --libvirt chooses it
        self.prefix = f"kdk-{vm}-"
        self.domain = self.prefix + "default"  # vagrant-libvirt: prefix + machine name
        self.pool = f"kdk-{vm}"

    # -- vagrant --------------------------------------------------------
    def _env(self, box: boxes.Box | None) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            VAGRANT_CWD=str(VAGRANTFILE.parent),
            VAGRANT_DOTFILE_PATH=str(self.state.path / "vagrant"),
            VAGRANT_DEFAULT_PROVIDER="libvirt",
            VAGRANT_NO_COLOR="1",
            KDK_PROJECT=str(self.project),
            KDK_DOMAIN_PREFIX=self.prefix,
            KDK_POOL=self.pool,
            KDK_CONSOLE_LOG=str(self.state.console_log),
            KDK_LIBVIRT_URI=self.libvirt.at.uri,
        )
        if box is None:
            box, _ = boxes.find_box()
        env.update(KDK_BOX_NAME=box.name, KDK_BOX_PATH=str(box.path))
        return env

    def vagrant(
        self, *args: str, box: boxes.Box | None = None, timeout: float = VAGRANT_TIMEOUT
    ) -> str:
        """Run `vagrant ARGS` in the namespace (output logged); its stdout.
        KdkError (BootFailed for `up`) with the last lines it printed when it
        fails or takes longer than `timeout`."""
        argv = self.libvirt.wrap(["vagrant", *args, "--no-tty"])
        log = self.state.file(LOG)
        self.state.path.mkdir(parents=True, exist_ok=True)
        error = BootFailed if args[0] == "up" else KdkError
        try:
            proc = run(argv, timeout=timeout, env=self._env(box))
        except subprocess.TimeoutExpired:
            raise error(f"vagrant {args[0]} took more than {timeout:g} s") from None
        with log.open("a") as f:
            f.write(f"$ vagrant {' '.join(args)}\n{proc.stdout}{proc.stderr}")
        if proc.returncode != 0:
            tail = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
            raise error(f"vagrant {args[0]} failed: {' | '.join(tail[-3:])} (see {log})")
        return proc.stdout

    # -- status ---------------------------------------------------------
    def record(self) -> VMRecord | None:
        """The running VM's record (its QEMU's disks are in the state
        folder); a stopped VM's record is cleared."""
        return self.state.running()

    def endpoint(self, rec: VMRecord) -> Endpoint:
        info = json.loads(self.state.file(INFO).read_text())
        return Endpoint(
            info["host"],
            rec.ssh_port,
            "root",
            Path(info["key"]),
            self.state.file(HOST_KEY_PUB),
            netns=self.libvirt.at.netns,
        )

    def guest(self) -> Guest:
        rec = self.require()
        return Guest(self.endpoint(rec), lambda: process_alive(rec.pid, self.domain))

    # -- building in the guest (its own headers) ----------------------------
    def build_target(self, rec: VMRecord, guest: Callable[[], Guest]) -> tuple[Kernel, Make | None]:
        """The box's kernel; modules for it build on the host when the host
        has its headers, else in the guest, into the project folder it
        shares (KDK_BUILD=guest: in the guest always). vermagic is checked
        either way."""
        kernel = Kernel(rec.kernel, BOOT / f"vmlinuz-{rec.kernel}", MODULES / rec.kernel)
        if kernel.build_dir.is_dir() and os.environ.get("KDK_BUILD") != "guest":
            return kernel, None
        return kernel, self._make(guest())

    def _make(self, g: Guest) -> Make:
        """A `make` that runs in the guest, in the project folder it shares
        at the same path: the .ko lands on the host."""

        def run(argv: list[str], cwd: Path | None) -> tuple[int, str]:
            for path in (cwd, *(Path(a.split("=", 1)[-1]) for a in argv if a.startswith("M="))):
                if path is not None and not path.is_relative_to(self.project):
                    raise KdkError(
                        f"{path} is outside the project {self.project}, which is "
                        "all the guest shares: it cannot build there"
                    )
            line = (
                shlex.join(argv)
                if cwd is None
                else f"cd {shlex.quote(str(cwd))} && {shlex.join(argv)}"
            )
            res = g.run(line, timeout=BUILD_TIMEOUT)
            return res.exit_code, (res.stdout + res.stderr).decode(errors="replace")

        return run

    def symbols_dir(self, kernel: Kernel, guest: Callable[[], Guest]) -> Path:
        """The kernel's build tree on the host, else a folder with the guest
        kernel's Module.symvers, fetched from the guest once per release."""
        if kernel.build_dir.is_dir():
            return kernel.build_dir
        release = kernel.release
        folder = self.state.path / "guest-build" / release
        symvers = folder / "Module.symvers"
        if not symvers.exists():
            folder.mkdir(parents=True, exist_ok=True)
            data = guest().check(["cat", f"/lib/modules/{release}/build/Module.symvers"]).stdout
            tmp = symvers.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(symvers)
        return folder

    # -- up -------------------------------------------------------------
    def up(
        self, req: BootRequest, say: Callable[[str], None], step: Callable[[str], None]
    ) -> tuple[VMRecord, bool]:
        """`vagrant up` unless running (the box is built first if needed).
        The guest runs the box's kernel under TCG, at its own address: a
        request for KVM, a port or the debug checks is refused, and one for
        another kernel than the box's fails once the guest tells its own."""
        _box_only(req)
        with self.state.lock(VAGRANT_TIMEOUT + 60):
            if req.libvirt is not None:
                self._use(parse_libvirt(req.libvirt))
            rec = self.record()
            booted = rec is None
            if rec is None:
                rec = self._up(say, step)
        if req.kernel is not None and not rec.kernel.startswith(req.kernel):
            raise KdkError(
                f"the vagrant guest runs its box's kernel {rec.kernel}, not "
                f"{req.kernel} (--kernel picks a host kernel for QEMU)"
            )
        return rec, booted

    def _use(self, at: LibvirtAt) -> None:
        """Use (and remember) the libvirt `at` from now on; refused while a
        Vagrant machine of this VM may be defined in another one."""
        if at == self.libvirt.at:
            return
        if (self.state.path / "vagrant").exists():
            raise KdkError(
                f"the VM's machine is in the libvirt {self.libvirt.at}: "
                f"`kdk down --destroy` it before --libvirt {at}"
            )
        remember(self.state.path, at)
        self.libvirt = Libvirt(at)

    def replace(self, rec: VMRecord, say: Callable[[str], None]) -> VMRecord:
        """Destroy the crashed (powered off) or hung guest of `rec` and bring
        a fresh one up from the box: no disk a crash may have left in doubt,
        and measured faster than `vagrant reload` or `up` of the old disk."""
        with self.state.lock(VAGRANT_TIMEOUT + 60):
            running = self.record()
            if running is not None and running.pid != rec.pid:
                return running  # replaced by another kdk meanwhile
            self.state.clear()
            self.vagrant("destroy", "-f", timeout=120.0)
            return self._up(say, lambda _: None)

    def _up(self, say: Callable[[str], None], step: Callable[[str], None]) -> VMRecord:
        step("box")
        box, built = boxes.build_box(self.state_root, say)  # named for plain `vagrant` too
        if built:
            say(f"box cached at {box.path}")
        step("libvirt")
        self.libvirt.ensure(say)
        made_from = self.state.file(MADE_FROM)
        if (self.state.path / "vagrant").exists() and (
            not made_from.exists() or made_from.read_bytes() != box.host_key.read_bytes()
        ):  # a VM kdk never logged in to, or made from a box rebuilt since
            say("the VM was not made from the current box: making it again")
            self.vagrant("destroy", "-f", box=box, timeout=120.0)
            self.libvirt.remove_pool(self.pool)  # with the old box's image in it
            boxes.remove_from_vagrant(box.name)  # Vagrant's copy may be the old one too
        other = None if (self.state.path / "vagrant").exists() else self._remove_orphan()
        if other is not None:
            raise KdkError(
                f"the libvirt domain {self.domain} is another kdk VM's (its folder "
                f"{other}): `kdk down --destroy` it there, or choose another --vm name"
            )
        self.libvirt.ensure_pool(self.pool, self.state.path / "pool")
        log = self.state.console_log
        if log.exists() and log.stat().st_size:  # keep the last boot's (a crash's) log
            log.replace(self.state.previous_console_log)
        step("vagrant up")
        started = time.time()
        self.vagrant("up", "--provider", "libvirt", box=box)
        opts = parse_ssh_config(self.vagrant("ssh-config", box=box))
        shutil.copyfile(box.host_key, self.state.file(HOST_KEY_PUB))
        pub = box.host_key.read_text().split()
        self.state.file(KNOWN_HOSTS).write_text(f"{HOST_ALIAS} {pub[0]} {pub[1]}\n")  # kdk ssh
        self.state.file(INFO).write_text(
            json.dumps(
                {
                    "host": opts["hostname"],
                    "key": opts["identityfile"],
                    "domain": self.domain,
                }
            )
            + "\n"
        )
        pid = read_pid(Path("/run/libvirt/qemu") / f"{self.domain}.pid")
        if pid is None:
            raise BootFailed(f"vagrant up succeeded but libvirt names no QEMU for {self.domain}")
        probe = VMRecord(self.name, pid, int(opts.get("port", "22")), "", "tcg", started, 0.0)
        with Guest(self.endpoint(probe), lambda: True) as g:
            release = g.check("uname -r").stdout.decode().strip()
        shutil.copyfile(box.host_key, made_from)  # the guest has that box's key: made from it
        rec = VMRecord(
            self.name, pid, probe.ssh_port, release, "tcg", started, time.time() - started
        )
        self.state.write(rec)
        return rec

    def _remove_orphan(self) -> Path | None:
        """A domain of this VM's name that no Vagrant machine folder knows
        (a kdk or test killed before `vagrant destroy`, a state folder
        removed by hand) is removed when it was made for this VM's state
        folder or for one that no longer exists, and so is a pool left
        without its domain. Another project's VM of the same name is not
        touched: its folder is returned."""
        xml = self.libvirt.domain_xml(self.domain)
        if xml is not None:
            source = ET.fromstring(xml).find("devices/console/source")
            owner = None if source is None else Path(source.get("path", "")).parent
            if owner is not None and owner != self.state.path and owner.exists():
                return owner
            self.libvirt.remove_domain(self.domain)
        self.libvirt.remove_pool(self.pool)
        return None

    def dry_run(self, req: BootRequest, say: Callable[[str], None]) -> list[str]:
        """The vagrant command `up` runs (in the namespace of libvirt's
        networks, with KDK_* variables naming the box, the libvirt URI and
        this VM's folder, pool and domain)."""
        _box_only(req)
        at = self.libvirt.at if req.libvirt is None else parse_libvirt(req.libvirt)
        return Libvirt(at).wrap(["vagrant", "up", "--provider", "libvirt", "--no-tty"])

    # -- down -----------------------------------------------------------
    def down(self) -> bool:
        """`vagrant halt` (forced when the guest does not power off within
        HALT_TIMEOUT); False if it was not up."""
        rec = self.record()
        if rec is None:
            return False
        try:
            self.vagrant("halt", timeout=HALT_TIMEOUT)
        except KdkError:
            self.vagrant("halt", "--force", timeout=60.0)
        if process_alive(rec.pid, self.domain):
            self.libvirt.virsh("destroy", self.domain, check=False)
        self.state.clear()
        return True

    def destroy(self) -> bool:
        """Stop the VM (False when it was not running) and remove everything
        kdk started for it: the domain and its
        volumes (`vagrant destroy`), the storage pool, and, with kdk's own
        libvirt when no other kdk VM is defined, the daemons, the namespace
        and its /etc copy (libvirt is started for this when it is not
        running, so that other VMs' definitions are seen, not lost). The
        user's libvirt is left running; the choice of it is forgotten."""
        running = self.record() is not None  # `vagrant destroy` stops it: no clean halt first
        machine = self.state.path / "vagrant"
        if machine.exists() or (self.libvirt.at.kdk_owned and ETC.exists()):
            self.libvirt.ensure(lambda _: None)
            if machine.exists():
                self.vagrant("destroy", "-f", timeout=120.0)
                self.libvirt.remove_pool(self.pool)
            else:  # another project's VM of this name is left alone
                self._remove_orphan()
        self.state.clear()
        for name in (INFO, HOST_KEY_PUB, MADE_FROM):
            self.state.file(name).unlink(missing_ok=True)
        shutil.rmtree(machine, ignore_errors=True)
        shutil.rmtree(self.state.path / "pool", ignore_errors=True)
        self.libvirt.stop_if_idle()
        remember(self.state.path, KDK)
        return running

    def details(self) -> dict[str, Any]:
        return {"libvirt": str(self.libvirt.at)}  # kdk up --libvirt's value


def _box_only(req: BootRequest) -> None:
    """Refuse what only the QEMU backend gives, in one line."""
    for given, what in (
        (req.accel == "kvm", "--accel kvm"),
        (req.ssh_port is not None, "--ssh-port"),
        (req.debug, "--debug"),
    ):
        if given:
            raise KdkError(
                f"{what} is for the QEMU backend: the vagrant guest runs its "
                "box's kernel under TCG, at its own address"
            )
    for given, what in (
        (req.cpus is not None, "--cpus is"),
        (req.memory_mb is not None, "--memory is"),
        (bool(req.devices), "--device and --can are"),
    ):
        if given:
            raise KdkError(
                f"{what} for the QEMU backend: the vagrant guest's machine is the "
                f"Vagrantfile's ({DEFAULT_CPUS} CPUs, {DEFAULT_MEMORY_MB} MiB, no devices added)"
            )
