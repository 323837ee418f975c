"""QEMU command lines and the accelerator choice, without booting."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from kdk.errors import KdkError
from kdk.kernel import Kernel
from kdk.vm import qemu

KERNEL = Kernel("6.1.0-56-amd64", Path("/boot/vmlinuz-6.1.0-56-amd64"), Path("/lib/modules/x"))


def config(accel: str = "tcg") -> qemu.QemuConfig:
    return qemu.QemuConfig(KERNEL, Path("/c/vmlinux"), Path("/c/initrd"), Path("/p"),
                           Path("/p/.kdk/vms/default"), accel, 2222)  # fmt: skip


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
    host_kernel: Kernel, tmp_path: Path
) -> None:
    t = time.monotonic()
    ok, why = qemu.probe_kvm(host_kernel, timeout=5)
    assert time.monotonic() - t < 5 + 3  # a hanging /dev/kvm must not hang kdk
    assert ok == (why == "")  # a "no" always says why, a "yes" says nothing
    if not ok:  # and the same reason reaches the user as one line
        said: list[str] = []
        assert qemu.choose_accel("auto", host_kernel, tmp_path / "a.json", said.append) == "tcg"
        assert said == [f"KVM is not usable ({why}); using TCG emulation"]


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
