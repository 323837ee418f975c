"""The libvirt the Vagrant backend uses: kdk's own, or the user's.

- **kdk's own** (the default, `--libvirt kdk`): kdk creates the network
  namespace `kdk-vagrant` and starts libvirtd and virtlogd in it with a
  copy of /etc/libvirt that `ip netns exec` puts in place of the host's
  (/etc/netns/kdk-vagrant/), so vagrant-libvirt's bridge, dnsmasq and NAT
  rules exist only inside the namespace; `kdk down --destroy` stops them
  and removes the namespace when no kdk VM is left. A libvirtd kdk did not
  start is refused, not shared.
- **the user's** (`--libvirt URI[,netns=NS]`): a libvirt already running on
  this machine, used as it is. kdk starts and stops no daemon, creates and
  removes no namespace and edits no configuration; vagrant and ssh run in
  the namespace NS its networks live in (none given: the host's own), and
  `kdk down --destroy` removes only what kdk made (the domain, its volumes,
  the VM's storage pool).

The choice is remembered in the VM's state folder like the backend.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import BootFailed, KdkError, MissingDependency
from ..guest.netns import exec_prefix
from ..state import process_alive

NETNS = "kdk-vagrant"  # kdk's own libvirt's namespace
ETC = Path("/etc/netns") / NETNS  # `ip netns exec` binds its entries over /etc's
RUN = Path("/run") / NETNS  # kdk's daemons' pid files
LIBVIRT_SOCK = Path("/run/libvirt/libvirt-sock")
SYSTEM_URI = "qemu:///system"
CHOICE = "libvirt"  # in the VM's state folder: the --libvirt value, absent for kdk's own
# qemu.conf for a libvirtd confined to a namespace: QEMU as root without a
# security driver or cgroups (containers and CI machines have neither set up).
QEMU_CONF = """\
# kdk: libvirt confined to a network namespace
security_driver = "none"
user = "root"
group = "root"
cgroup_controllers = [ ]
remember_owner = 0
"""
DAEMONS = ("virtlogd", "libvirtd")
DAEMON_TIMEOUT = 30.0
VIRSH_TIMEOUT = 60.0


@dataclass(frozen=True)
class LibvirtAt:
    """Where the Vagrant backend's libvirt is."""

    uri: str = SYSTEM_URI  # a libvirt of this machine's (qemu:///system, ?socket= allowed)
    netns: str | None = NETNS  # the namespace its networks live in; None: the host's own
    kdk_owned: bool = True  # kdk starts and stops it (NETNS); else the user's, used as it is

    def __str__(self) -> str:
        """The --libvirt value that names it."""
        if self.kdk_owned:
            return "kdk"
        return self.uri + (f",netns={self.netns}" if self.netns else "")


KDK = LibvirtAt()


def parse_libvirt(text: str) -> LibvirtAt:
    """A --libvirt value: `kdk`, or `URI[,netns=NS]` for the user's own."""
    if text == "kdk":
        return KDK
    uri, _, rest = text.partition(",netns=")
    parts = urlsplit(uri)
    if parts.scheme != "qemu" or parts.netloc or parts.path != "/system":
        raise KdkError(
            f"--libvirt {text}: not `kdk` nor a libvirt of this machine's "
            f"({SYSTEM_URI}[?socket=PATH][,netns=NS])"
        )
    if "," in rest or "/" in rest or (rest == "" and text.endswith("=")):
        raise KdkError(f"--libvirt {text}: netns= takes one namespace's name")
    return LibvirtAt(uri, rest or None, kdk_owned=False)


def remembered(folder: Path) -> LibvirtAt:
    """The VM's libvirt (its state folder remembers it); kdk's own by default."""
    try:
        return parse_libvirt((folder / CHOICE).read_text().strip())
    except (OSError, KdkError):
        return KDK


def remember(folder: Path, at: LibvirtAt) -> None:
    """Remember `at` for the VM of `folder` (kdk's own: forget)."""
    if at.kdk_owned:
        (folder / CHOICE).unlink(missing_ok=True)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / CHOICE).write_text(f"{at}\n")


def run(
    argv: list[str], timeout: float = VIRSH_TIMEOUT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`argv` run to its end (bounded by `timeout`), its output captured."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def _check(argv: list[str]) -> None:
    proc = run(argv)
    if proc.returncode != 0:
        raise KdkError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _stop(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL when it did not end within `timeout`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process_alive(pid, ""):  # gone, or a zombie nobody reaps
                return
            time.sleep(0.1)


def answers(sock: Path = LIBVIRT_SOCK) -> bool:
    """Whether something accepts connections on the unix socket `sock`."""
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(sock))
        except OSError:
            return False
        return True


def daemons_running(run_dir: Path) -> bool:
    """Whether the libvirtd whose pid file is in `run_dir` runs."""
    pid = read_pid(run_dir / "libvirtd.pid")
    return pid is not None and process_alive(pid, "libvirtd")


def start_confined(netns: str, run_dir: Path) -> None:
    """The namespace `netns` (lo up) with virtlogd and libvirtd started in
    it (pid files in `run_dir`), configured by a copy of /etc/libvirt in
    /etc/netns/<netns>/ (QEMU_CONF; the host's autostarted networks left
    out); returns once libvirtd answers."""
    if not Path("/run/netns", netns).exists():
        _check(["ip", "netns", "add", netns])
    _check(["ip", "-n", netns, "link", "set", "lo", "up"])
    conf = Path("/etc/netns", netns, "libvirt")
    if not conf.is_dir():
        shutil.copytree("/etc/libvirt", conf, symlinks=True)
        shutil.rmtree(conf / "qemu" / "networks" / "autostart", ignore_errors=True)
    (conf / "qemu.conf").write_text(QEMU_CONF)
    run_dir.mkdir(parents=True, exist_ok=True)
    for daemon in DAEMONS:
        _check([*exec_prefix(netns), daemon, "-d", "-p", str(run_dir / f"{daemon}.pid")])
    deadline = time.monotonic() + DAEMON_TIMEOUT
    while run([*exec_prefix(netns), "virsh", "-q", "-c", SYSTEM_URI, "version"]).returncode:
        if time.monotonic() > deadline:
            raise BootFailed(f"libvirtd did not answer within {DAEMON_TIMEOUT:g} s")
        time.sleep(0.2)


def stop_confined(netns: str, run_dir: Path) -> None:
    """Undo start_confined: the networks (their dnsmasq), the daemons by
    pid, any process left in the namespace, the namespace and its /etc copy."""
    virsh = [*exec_prefix(netns), "virsh", "-q", "-c", SYSTEM_URI]
    if daemons_running(run_dir):
        for net in run([*virsh, "net-list", "--all", "--name"]).stdout.split():
            run([*virsh, "net-destroy", net])
            run([*virsh, "net-undefine", net])
    for daemon in reversed(DAEMONS):
        pid = read_pid(run_dir / f"{daemon}.pid")
        if pid is not None and process_alive(pid, daemon):
            _stop(pid)
    if Path("/run/netns", netns).exists():
        for left in run(["ip", "netns", "pids", netns]).stdout.split():
            _stop(int(left))
        _check(["ip", "netns", "del", netns])
    shutil.rmtree(Path("/etc/netns", netns), ignore_errors=True)
    shutil.rmtree(run_dir, ignore_errors=True)


class Libvirt:
    """The libvirt at `at`: started and stopped by kdk when it is kdk's own."""

    def __init__(self, at: LibvirtAt = KDK) -> None:
        self.at = at

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv` run in the namespace of libvirt's networks."""
        return [*exec_prefix(self.at.netns), *argv]

    def running(self) -> bool:
        """kdk's own: its libvirtd runs; the user's: it answers."""
        if self.at.kdk_owned:
            return daemons_running(RUN)
        return run(self.wrap(["virsh", "-q", "-c", self.at.uri, "version"])).returncode == 0

    def virsh(self, *args: str, check: bool = True) -> str:
        proc = run(self.wrap(["virsh", "-q", "-c", self.at.uri, *args]))
        if check and proc.returncode != 0:
            raise KdkError(f"virsh {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout

    def ensure(self, say: Callable[[str], None]) -> None:
        """kdk's own: the namespace and daemons started unless they run; the
        user's: checked to answer (nothing is started)."""
        for tool, package in (("virsh", "libvirt-clients"), ("vagrant", "vagrant vagrant-libvirt")):
            if shutil.which(tool) is None:
                raise MissingDependency(
                    f"{tool} not found: install {package} (scripts/install-vagrant)"
                )
        if not self.at.kdk_owned:
            if self.at.netns and not Path("/run/netns", self.at.netns).exists():
                raise KdkError(
                    f"your libvirt at {self.at}: there is no network namespace "
                    f"{self.at.netns} (`ip netns list`)"
                )
            if not self.running():
                raise KdkError(
                    f"your libvirt at {self.at} does not answer (`virsh -c {self.at.uri} version`)"
                )
            return
        if self.running():
            return
        if os.geteuid() != 0:
            raise KdkError("the vagrant backend needs root (libvirt in a network namespace)")
        if shutil.which("libvirtd") is None:
            raise MissingDependency(
                "libvirtd not found: install libvirt-daemon-system (scripts/install-vagrant)"
            )
        if answers(LIBVIRT_SOCK):
            raise KdkError(
                f"a libvirtd that kdk did not start answers on {LIBVIRT_SOCK}: "
                "stop it, or use it: kdk up --backend vagrant "
                f"--libvirt {SYSTEM_URI}"
            )
        say(f"starting libvirt in the network namespace {NETNS}")
        start_confined(NETNS, RUN)

    def ensure_pool(self, name: str, path: Path) -> None:
        """A storage pool in a folder kdk owns, defined and started."""
        if name not in self.virsh("pool-list", "--all", "--name").split():
            path.mkdir(parents=True, exist_ok=True)
            self.virsh("pool-define-as", name, "dir", "--target", str(path))
        if name not in self.virsh("pool-list", "--name").split():
            self.virsh("pool-start", name)

    def remove_pool(self, name: str) -> None:
        """The pool, its volumes and its folder."""
        if name not in self.virsh("pool-list", "--all", "--name").split():
            return
        self.virsh("pool-start", name, check=False)  # volumes are listed only when it runs
        for vol in self.virsh("vol-list", name, check=False).splitlines():
            self.virsh("vol-delete", vol.split()[0], "--pool", name, check=False)
        self.virsh("pool-destroy", name, check=False)
        self.virsh("pool-delete", name, check=False)
        self.virsh("pool-undefine", name, check=False)

    def domain_xml(self, name: str) -> str | None:
        """The definition of the domain `name`; None when there is none."""
        return self.virsh("dumpxml", name, check=False) or None  # virsh prints nothing then

    def remove_domain(self, name: str) -> None:
        """The domain `name` stopped and undefined, with its volumes."""
        self.virsh("destroy", name, check=False)  # fails when it is not running
        self.virsh("undefine", name, "--remove-all-storage")

    def idle(self) -> bool:
        """No domain and no storage pool left: nothing of any kdk VM."""
        return not (
            self.virsh("list", "--all", "--name").split()
            or self.virsh("pool-list", "--all", "--name").split()
        )

    def stop_if_idle(self) -> None:
        """kdk's own: stop() unless a kdk VM (a domain or a pool) is still
        defined. The user's libvirt is left running, always."""
        if self.at.kdk_owned and (not self.running() or self.idle()):
            self.stop()

    def stop(self) -> None:
        """Stop everything kdk started for its own libvirt (stop_confined)."""
        if self.at.kdk_owned:
            stop_confined(NETNS, RUN)
