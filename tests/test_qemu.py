"""QEMU command lines and the accelerator choice, without booting."""

from __future__ import annotations

import dataclasses
import json
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kdk.errors import BootFailed, KdkError
from kdk.kernel import Kernel
from kdk.state import process_alive
from kdk.vm import devices, qemu

from .conftest import kdk_cli

KERNEL = Kernel("6.1.0-56-amd64", Path("/boot/vmlinuz-6.1.0-56-amd64"), Path("/lib/modules/x"))


def config(accel: str = "tcg") -> qemu.QemuConfig:
    return qemu.QemuConfig(
        KERNEL,
        Path("/c/vmlinux"),
        Path("/c/initrd"),
        Path("/p"),
        Path("/p/.kdk/vms/default"),
        accel,
        2222,
    )


def option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_host_root_is_shared_read_only_and_the_project_read_write() -> None:
    argv = qemu.qemu_argv(config())
    fsdevs = option(argv, "-fsdev")
    root = [f for f in fsdevs if "path=/," in f]
    assert len(root) == 1 and "readonly=on" in root[0]
    project = [f for f in fsdevs if "path=/p," in f]
    assert len(project) == 1 and "readonly" not in project[0]


def test_ssh_is_forwarded_on_loopback_only_and_the_guest_is_fenced() -> None:
    netdev, wire = option(qemu.qemu_argv(config()), "-netdev")
    assert "hostfwd=tcp:127.0.0.1:2222-:22" in netdev
    assert "restrict=on" in netdev
    # the packet wire: unix datagram sockets only, nothing on the host's network
    assert wire.startswith("dgram,") and wire.count("type=unix") == 2


def test_accel_decides_cpu_and_machine() -> None:
    tcg, kvm = qemu.qemu_argv(config("tcg")), qemu.qemu_argv(config("kvm"))
    assert option(tcg, "-machine") == ["pc,accel=tcg"] and option(tcg, "-cpu") == ["max"]
    assert option(kvm, "-machine") == ["pc,accel=kvm"] and option(kvm, "-cpu") == ["host"]
    assert option(tcg, "-kernel") == ["/c/vmlinux"]


@pytest.mark.parametrize(
    ("field", "flag", "default", "other", "refused"),
    [
        ("cpus", "-smp", "2", 1, ("--cpus", "0", "a guest needs at least one CPU")),
        ("memory_mb", "-m", "2048", 512, ("--memory", "100", "a guest needs at least 256 MiB")),
    ],
)
def test_the_guests_cpus_and_memory_are_the_defaults_unless_asked_for_others(
    field: str, flag: str, default: str, other: int, refused: tuple[str, str, str]
) -> None:
    assert option(qemu.qemu_argv(config()), flag) == [default]
    change: dict[str, Any] = {field: other}
    asked = dataclasses.replace(config(), **change)
    assert option(qemu.qemu_argv(asked), flag) == [str(other)]
    name, value, why = refused
    r = kdk_cli("up", name, value)
    assert r.returncode == 2  # a usage error
    assert r.stderr == f"kdk: {name} {value}: {why}\n"


def test_devices_are_on_the_command_line_only_when_asked_for() -> None:
    plain = config()
    assert "-object" not in qemu.qemu_argv(plain)
    cfg = dataclasses.replace(plain, devices=("edu", *devices.can_bus(2)))
    argv = qemu.qemu_argv(cfg)
    assert option(argv, "-object") == ["can-bus,id=kdkcan0"]
    assert option(argv, "-device")[-3:] == ["edu", *devices.can_bus(2)]


def test_kernel_command_line_names_the_folders() -> None:
    line = qemu.kernel_cmdline(config())
    assert "kdk.project=/p" in line.split() and "kdk.state=/p/.kdk/vms/default" in line.split()
    assert "console=ttyS0" in line and "panic=-1" in line


def test_free_port_is_free_and_a_taken_one_is_not() -> None:
    port = qemu.free_port()
    assert qemu.port_free(port)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert not qemu.port_free(port)


def test_accel_tcg_is_never_probed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_probe(kernel: Kernel) -> tuple[bool, str]:
        raise AssertionError("probed")

    monkeypatch.setattr(qemu, "probe_kvm", no_probe)
    assert qemu.choose_accel("tcg", KERNEL, tmp_path / "a.json", print) == "tcg"


def test_probe_answer_is_cached_per_host_boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def probe(kernel: Kernel) -> tuple[bool, str]:
        calls.append(kernel)
        return False, "it hangs"

    said: list[str] = []
    monkeypatch.setattr(qemu, "probe_kvm", probe)
    cache = tmp_path / "accel.json"
    assert qemu.choose_accel("auto", KERNEL, cache, said.append) == "tcg"
    assert qemu.choose_accel("auto", KERNEL, cache, said.append) == "tcg"
    assert len(calls) == 1
    assert said == ["KVM is not usable (it hangs); using TCG emulation"] * 2
    assert json.loads(cache.read_text())["boot_id"] == qemu.host_boot_id()
    with pytest.raises(KdkError, match="KVM is not usable: it hangs"):
        qemu.choose_accel("kvm", KERNEL, cache, said.append)


@pytest.mark.vm
def test_probe_on_this_host_answers_in_time_with_a_reason(
    host_kernel: Kernel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One real probe, the one `choose_accel` makes (with its own timeout,
    PROBE_TIMEOUT): what it answered is what the user is told."""
    answers: list[tuple[bool, str]] = []

    def probe(kernel: Kernel) -> tuple[bool, str]:
        answers.append(real_probe(kernel))
        return answers[-1]

    real_probe = qemu.probe_kvm
    monkeypatch.setattr(qemu, "probe_kvm", probe)
    said: list[str] = []
    t = time.monotonic()
    accel = qemu.choose_accel("auto", host_kernel, tmp_path / "a.json", said.append)
    assert time.monotonic() - t < qemu.PROBE_TIMEOUT + 3  # a hanging /dev/kvm must not hang kdk
    [(ok, why)] = answers
    assert ok == (why == "")  # a "no" always says why, a "yes" says nothing
    assert accel == ("kvm" if ok else "tcg")
    # and the same reason reaches the user as one line
    assert said == ([] if ok else [f"KVM is not usable ({why}); using TCG emulation"])


def test_qemu_errors_are_shortened_to_their_reason() -> None:
    seen_here = (
        "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: "
        "Assertion `ret == cpu->kvm_msr_buf->nmsrs' failed."
    )
    assert qemu._qemu_reason(seen_here).startswith("kvm_buf_set_msrs: Assertion")
    no_module = "qemu-system-x86_64: -accel kvm: Could not access KVM kernel module"
    assert (
        qemu._qemu_reason("warning: x\n" + no_module)
        == "-accel kvm: Could not access KVM kernel module"
    )


def test_dry_run_prints_the_command_and_boots_nothing(
    host_kernel: Kernel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KDK_STATE", str(tmp_path))
    r = kdk_cli(
        "up",
        "--dry-run",
        "--accel",
        "tcg",
        "--kernel",
        host_kernel.release,
        "--device",
        "edu",
        "--can",
        "2",
        "--cpus",
        "1",
        "--memory",
        "768",
    )
    assert r.returncode == 0, r.stderr
    (line,) = r.stdout.splitlines()
    argv = shlex.split(line)
    assert argv[0] == qemu.QEMU and "-netdev" in argv
    assert option(argv, "-smp") == ["1"] and option(argv, "-m") == ["768"]
    assert option(argv, "-device")[-3:] == ["edu", *devices.can_bus(2)]
    assert host_kernel.release in line and "accel=tcg" in line
    assert not list(tmp_path.glob("vms/*/vm.json")) and not list(tmp_path.glob("vms/*/qemu.pid"))


def test_cached_trees_share_one_device_and_are_named_to_the_guest(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b-1").mkdir()
    (tmp_path / "b-2").mkdir()
    trees = qemu.cached_trees((str(tmp_path / "a"), str(tmp_path / "b-*"), "/no/such/tree"))
    assert trees == (tmp_path / "a", tmp_path / "b-1", tmp_path / "b-2")
    cfg = qemu.QemuConfig(
        KERNEL,
        Path("/c/vmlinux"),
        Path("/c/initrd"),
        Path("/p"),
        Path("/p/s"),
        "tcg",
        2222,
        cached=trees,
    )
    argv = qemu.qemu_argv(cfg)
    tags = [d.rsplit("mount_tag=", 1)[1] for d in option(argv, "-device") if "kdkcache" in d]
    assert tags == ["kdkcache"]  # the guest binds each tree from it
    shares = [f for f in option(argv, "-fsdev") if f.startswith("local,id=cache")]
    assert shares == [f"local,id=cache,path=/,readonly=on,{qemu.SHARE_OPTIONS}"]
    assert f"kdk.cached={tmp_path}/a,{tmp_path}/b-1,{tmp_path}/b-2" in qemu.kernel_cmdline(cfg)
    # the file the package manager rewrites is named with them (and only with them)
    assert "kdk.stamp=" not in qemu.kernel_cmdline(cfg)
    stamped = dataclasses.replace(cfg, stamp=Path("/var/lib/dpkg/status"))
    assert "kdk.stamp=/var/lib/dpkg/status" in qemu.kernel_cmdline(stamped).split()
    unused = dataclasses.replace(stamped, cached=())
    assert "kdk.stamp=" not in qemu.kernel_cmdline(unused)
    assert not [d for d in option(qemu.qemu_argv(unused), "-device") if "kdkcache" in d]


def test_a_guest_not_ready_in_time_is_stopped(tmp_path: Path) -> None:
    backend = qemu.QemuBackend(tmp_path, tmp_path)
    backend.state.path.mkdir(parents=True)
    backend.state.console_log.write_bytes(b"[    1.0] acpi PNP0A03:00: fail to add MMCONFIG\r\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(backend.state.path)]
    )
    deadline = time.monotonic() + 10
    while not process_alive(proc.pid, str(backend.state.path)):  # until its exec is done
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        # `up` then boots once more
        assert backend._wait_ready(proc.pid, 0.3) == "the guest was not ready after 0.3 s"
        assert proc.wait(timeout=5) != 0
    finally:
        proc.kill()


def test_a_vm_that_stopped_while_booting_says_what_its_kernel_said(tmp_path: Path) -> None:
    backend = qemu.QemuBackend(tmp_path, tmp_path)
    backend.state.path.mkdir(parents=True)
    backend.state.console_log.write_bytes(
        b"[    0.9] Kernel panic - not syncing: VFS: Unable to mount root fs\r\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", "pass", str(backend.state.path)])
    proc.wait()  # a QEMU that exited (-no-reboot) when its kernel panicked
    assert backend._wait_ready(proc.pid, 10.0) == (
        "the VM stopped while booting: Kernel panic - not syncing: VFS: Unable to mount root fs"
    )


def test_a_guest_that_cannot_get_ready_says_why_in_one_line(tmp_path: Path) -> None:
    backend = qemu.QemuBackend(tmp_path, tmp_path)
    backend.state.path.mkdir(parents=True)
    backend.state.console_log.write_bytes(
        b"[    4.2] virtio_net virtio2 eth0: renamed\r\n"
        b"kdk-failed: sshd is not listening on port 22 after 10 s\r\n"
    )
    # a stand-in for QEMU: a process whose command line names the state folder
    proc = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(backend.state.path)]
    )
    try:
        with pytest.raises(BootFailed) as err:
            backend._wait_ready(proc.pid, 10.0)
        assert str(err.value) == (
            "the guest is not ready: sshd is not listening on port 22 after 10 s; "
            f"see {backend.state.console_log}"
        )
        assert proc.wait(timeout=5) != 0  # and the VM was stopped
    finally:
        proc.kill()
        proc.wait()
