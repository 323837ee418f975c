"""`kdk up --debug` and the gdb stub on the QEMU command line, without booting."""

from __future__ import annotations

from pathlib import Path

from kdk.kernel import Kernel
from kdk.state import StateDir, VMRecord
from kdk.vm import qemu


def kernel_with_config(tmp_path: Path, *options: str) -> Kernel:
    (tmp_path / "config-6.12.1-amd64").write_text("\n".join(["# comment", *options]) + "\n")
    return Kernel("6.12.1-amd64", tmp_path / "vmlinuz-6.12.1-amd64", tmp_path / "modules")


def test_debug_turns_on_what_the_kernel_was_built_with(tmp_path: Path) -> None:
    debian61 = kernel_with_config(
        tmp_path, "CONFIG_SLUB_DEBUG=y", "CONFIG_PAGE_POISONING=y", "# CONFIG_KFENCE is not set"
    )
    assert qemu.debug_cmdline(debian61) == ["page_poison=1"]
    assert qemu.slub_debug(debian61, True) == ["slub_debug=FZPU"]
    assert qemu.slub_debug(debian61, False) == []
    debian612 = kernel_with_config(tmp_path, "CONFIG_SLUB_DEBUG=y", "CONFIG_KFENCE=y")
    assert qemu.debug_cmdline(debian612) == ["kfence.sample_interval=100"]


def test_debug_is_on_the_kernel_command_line_only_when_asked(tmp_path: Path) -> None:
    kernel = kernel_with_config(tmp_path, "CONFIG_SLUB_DEBUG=y")
    images, state = (Path("/c/vmlinux"), Path("/c/initrd")), Path("/p/.kdk/vms/default")
    for debug in (False, True):
        cfg = qemu.QemuConfig(kernel, *images, Path("/p"), state, "tcg", 2222, debug=debug)
        assert ("slub_debug=FZPU" in qemu.kernel_cmdline(cfg).split()) == debug


def test_every_vm_has_a_gdb_stub_on_a_socket_in_its_state_folder() -> None:
    argv = qemu.gdb_stub(Path("/p/.kdk/vms/default"))
    assert argv == [
        "-chardev",
        "socket,id=gdb0,path=/p/.kdk/vms/default/gdb.sock,server=on,wait=off",
        "-gdb",
        "chardev:gdb0",
    ]
    assert qemu.gdb_stub(Path("/" + "x" * 120)) == []  # too long for a unix socket address


def test_a_record_from_before_debug_reads_as_not_debug(tmp_path: Path) -> None:
    (tmp_path / "vm.json").write_text(
        '{"backend": "qemu", "pid": 1, "ssh_port": 2, '
        '"kernel": "k", "accel": "tcg", "started": 0.0, '
        '"ready_seconds": 1.0}'
    )
    rec = StateDir(tmp_path).read()
    assert rec is not None and rec == VMRecord("qemu", 1, 2, "k", "tcg", 0.0, 1.0)
    assert rec.debug is False
