"""The wire's fixed facts: addresses on both ends, and its socket paths.

Every kdk VM has a second virtio NIC whose frames travel, one per datagram,
over two unix datagram sockets: QEMU binds the guest side's and sends to
the host side's, which a host process (kdk.net.wire) binds. The addresses
exist only on this virtual link between a host process and the guest; no
host interface ever has them.

A unix socket path holds at most 107 bytes. The sockets live in the VM's
state folder when their paths fit; for a deeper project they go to a short
folder of their own, /tmp/kdk-<uid>/<hash of the state folder>/.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

GUEST_SOCKET = "wire-q.sock"  # bound by QEMU: frames sent here enter the guest
HOST_SOCKET = "wire-h.sock"  # bound by the wire's owner: the guest's frames arrive here
LOCK = "wire.lock"  # held (flock) by the owner of the host end; holds its pid
MAX_PATH = 107  # sizeof(sun_path) minus the terminating NUL


@dataclass(frozen=True)
class WireFacts:
    """The two ends of the wire (the same for every VM: each wire is its own link)."""

    guest_if: str = "eth1"  # the guest's interface (found by its MAC at boot)
    guest_mac: str = "52:54:00:6b:64:02"
    guest_ip: str = "10.9.0.2"
    host_mac: str = "02:6b:64:00:00:01"  # locally administered: no vendor's
    host_ip: str = "10.9.0.1"
    prefix: int = 24

    def cmdline(self) -> str:
        """The guest kernel command-line word the guest's setup reads."""
        guest = f"{self.guest_mac},{self.guest_ip}/{self.prefix}"
        return f"kdk.wire={guest},{self.host_mac},{self.host_ip}"


WIRE = WireFacts()


def wire_dir(state: Path) -> Path:
    """The folder of the wire's sockets and lock for the VM of `state`."""
    if len(str(state / HOST_SOCKET)) <= MAX_PATH:
        return state
    digest = hashlib.sha1(str(state.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir(), f"kdk-{os.getuid()}", digest)


def prepare(state: Path) -> None:
    """Make the socket folder and remove a stale guest-side socket (of a
    VM that was killed), before QEMU binds it again."""
    folder = wire_dir(state)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    (folder / GUEST_SOCKET).unlink(missing_ok=True)


def qemu_netdev(state: Path) -> list[str]:
    """QEMU arguments for the wire's NIC (see `prepare`)."""
    folder = wire_dir(state)
    return [
        "-netdev",
        f"dgram,id=wire,local.type=unix,local.path={folder / GUEST_SOCKET},"
        f"remote.type=unix,remote.path={folder / HOST_SOCKET}",
        "-device",
        f"virtio-net-pci,netdev=wire,mac={WIRE.guest_mac},romfile=",
    ]


def owner(state: Path) -> int | None:
    """The pid of the process that owns the wire of the VM of `state`, if any."""
    lock = wire_dir(state) / LOCK
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _pid_in(lock)
    finally:
        os.close(fd)
    return None


def describe(state: Path) -> list[str]:
    """What `kdk wire` prints: both ends, where the sockets are, who owns it."""
    pid = owner(state)
    return [
        f"guest   {WIRE.guest_if}  {WIRE.guest_mac}  {WIRE.guest_ip}/{WIRE.prefix}",
        f"host    end   {WIRE.host_mac}  {WIRE.host_ip}",
        f"sockets {wire_dir(state)}/{{{GUEST_SOCKET},{HOST_SOCKET}}}",
        f"owner   {who(pid) if pid is not None else 'none'}",
    ]


def _pid_in(lock: Path) -> int:
    try:
        return int(lock.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def held_by(lock: Path) -> str:
    """Who holds the wire's `lock` (its pid and command line), for a refusal."""
    return who(_pid_in(lock))


def who(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return f"pid {pid}"
    return f"pid {pid} ({cmd[:60]})"
