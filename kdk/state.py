"""The state folder of a VM: what runs, where, and with which keys.

Everything about one VM lives in one folder (by default `.kdk/vm`): the
QEMU pid and command line, the ssh port, the keys kdk generated, and the
console log; a lock lets one boot run at a time. The record is written once
the VM is ready and removed when it stops; a VM that died or was killed is
told apart from a running one by its pid *and* its command line, so a
recycled pid never reads as "running".
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from . import inguest
from .locks import file_lock

STATE_FILE = "vm.json"
HOST_KEY = "ssh_host_ed25519_key"
CLIENT_KEY = "id_ed25519"
CONSOLE_LOG = "console.log"
PID_FILE = "qemu.pid"
CMDLINE_FILE = "qemu.cmdline"  # the QEMU command line of the last boot, shell-quoted
LOCK_FILE = "up.lock"  # held while a VM is being booted
KNOWN_HOSTS = "known_hosts"
GDB_SOCKET = "gdb.sock"  # QEMU's gdb stub
GDB_MARKER = "gdb.attached"  # while `kdk gdb` runs (kdk.debug.gdb): its pid
HOST_ALIAS = "kdk-guest"
GUEST_FILES = "guest"  # the staged copies of kdk/inguest files the guest runs
STAGED = ("sshd_config",)


# The guest's machine, unless `kdk up --cpus/--memory` says otherwise (the
# Vagrantfile's libvirt.cpus and libvirt.memory are the same). Two CPUs: a
# boot's steps and a load's programs overlap. Under TCG each CPU is a host
# thread, and several VMs at once whose CPUs outnumber the host's cores run
# slower together than one after the other (their CPUs wait for each
# other's descheduled threads): `kdk test -j N` shares the cores out
# (kdk.testing's guest_cpus).
DEFAULT_CPUS = 2
# bcc compiling in the guest wants room. Less boots quicker with --debug:
# page_poison writes every free page at boot (2048 MiB: 11-13 s to ready
# on one CPU under TCG, 512 MiB: 4.3 s).
DEFAULT_MEMORY_MB = 2048
MIN_MEMORY_MB = 256


@dataclass(frozen=True)
class VMRecord:
    """What kdk knows of a VM it started."""

    backend: str  # "qemu" or "vagrant"
    pid: int  # the QEMU process (under libvirt for Vagrant)
    ssh_port: int  # on 127.0.0.1
    kernel: str  # the release the guest runs
    accel: str  # "kvm" or "tcg"
    started: float  # time.time() when QEMU was started
    ready_seconds: float  # from QEMU start to sshd answering
    debug: bool = False  # booted with the allocator's checks (kdk up --debug)
    devices: tuple[str, ...] = ()  # the emulated devices added (QEMU -device specs)
    cpus: int = DEFAULT_CPUS  # the guest's CPUs (a record from before they were kept: the default)
    memory_mb: int = DEFAULT_MEMORY_MB  # the guest's memory (likewise)


class StateDir:
    """Paths inside one VM's state folder, and its record."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def console_log(self) -> Path:
        """The serial console of the running (or last) boot."""
        return self.path / CONSOLE_LOG

    @property
    def previous_console_log(self) -> Path:
        """The console of the boot before: after a crash, where its report is."""
        return self.path / ("previous-" + CONSOLE_LOG)

    def read(self) -> VMRecord | None:
        """The record, or None when there is none or it cannot be read."""
        try:
            data = json.loads((self.path / STATE_FILE).read_text())
            return VMRecord(**dict(data, devices=tuple(data.get("devices", ()))))
        except (OSError, ValueError, TypeError):
            return None

    def write(self, record: VMRecord) -> None:
        tmp = self.path / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(record), indent=1) + "\n")
        tmp.replace(self.path / STATE_FILE)

    def clear(self) -> None:
        for name in (STATE_FILE, PID_FILE):
            (self.path / name).unlink(missing_ok=True)

    def alive(self, rec: VMRecord) -> bool:
        """Whether the VM of `rec` still runs (its process names this folder)."""
        return process_alive(rec.pid, str(self.path))

    def running(self) -> VMRecord | None:
        """The record of a VM whose QEMU still runs (its command line names
        this folder: the pid file, a disk or a share); a dead VM's
        leftovers are cleared."""
        rec = self.read()
        if rec is None:
            return None
        if self.alive(rec):
            return rec
        self.clear()
        return None

    @contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        """Hold the folder's lock while the block runs (one boot at a time);
        KdkError when another holder keeps it longer than `timeout` s."""
        busy = f"another kdk kept {self.path} locked for {timeout:g} s (booting this VM)"
        with file_lock(self.path / LOCK_FILE, timeout, busy):
            yield

    def stage_guest_files(self) -> None:
        """Copy the guest's sshd config into guest/, where
        the guest (which mounts this folder) reads it from; kdk's own
        package may live where the guest cannot see it (a user's home)."""
        target = self.path / GUEST_FILES
        target.mkdir(parents=True, exist_ok=True)
        for name in STAGED:
            shutil.copyfile(inguest.path(name), target / name)

    def ensure_keys(self) -> None:
        """Generate the guest's host key and kdk's client key once per folder."""
        self.path.mkdir(parents=True, exist_ok=True)
        for name in (HOST_KEY, CLIENT_KEY):
            if not (self.path / name).exists():
                _write_ed25519(self.path / name)
        known = f"{HOST_ALIAS} {(self.path / (HOST_KEY + '.pub')).read_text().strip()}\n"
        (self.path / KNOWN_HOSTS).write_text(known)


def _write_ed25519(path: Path) -> None:
    """An OpenSSH ed25519 key pair at `path` (0600) and `path`.pub."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private)
    path.with_name(path.name + ".pub").write_bytes(public + b" kdk\n")


def process_alive(pid: int, marker: str) -> bool:
    """True when `pid` runs and its command line contains `marker`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    if marker.encode() not in cmdline:
        return False
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return fields[0] != "Z"


def gdb_holder(state: Path) -> int | None:
    """The pid of the `kdk gdb` attached to the VM of `state`, if one is."""
    try:
        pid = int((state / GDB_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return pid if process_alive(pid, "") else None


def uptime(record: VMRecord) -> float:
    return time.time() - record.started
