"""kdk gdb: the command line it builds, and gdb on a real guest through QEMU's stub."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.debug import gdb
from kdk.errors import KdkError
from kdk.guest.ssh import Result
from kdk.kernel import Kernel
from kdk.modules.build import build
from kdk.project import ModuleSource
from kdk.testing import session_vm
from kdk.ui import say

from .conftest import PROJECT


def test_gdb_attaches_to_the_socket_and_loads_the_module_after_it(tmp_path: Path) -> None:
    argv = gdb.gdb_argv(tmp_path, Path("/c/vmlinux"), "add-symbol-file m.ko 0x10", ["-batch"])
    assert argv[1:3] == ["-q", "/c/vmlinux"]
    assert argv[3:5] == ["-ex", f"target remote {tmp_path}/gdb.sock"]
    assert argv[5:] == ["-ex", "set confirm off", "-ex", "add-symbol-file m.ko 0x10",
                        "-ex", "set confirm on", "-batch"]  # fmt: skip
    bare = gdb.gdb_argv(tmp_path, None, None)
    assert bare[1:] == ["-q", "-ex", f"target remote {tmp_path}/gdb.sock"]


@pytest.mark.kbuild
def test_sections_at_the_guests_addresses_and_the_build_id_checked(
    tmp_path: Path, kdk_kernel: Kernel
) -> None:
    shutil.copytree(PROJECT / "kmods" / "hello", tmp_path / "hello",
                    ignore=shutil.ignore_patterns("*.*o"))  # fmt: skip
    src = ModuleSource("hello", tmp_path / "hello")
    ko = build(src, kdk_kernel, tmp_path / "stamps").main_module("hello")
    build_id = gdb.ko_sections(ko)[1]
    guest = "\n".join(["sections .data .init.text .text __versions", "0xffffffffc0204000",
                       "0xffffffffc0210000", "0xffffffffc0200000", "0xffffffffc0205000",
                       f"build-id {build_id}"])  # fmt: skip
    cmd = gdb.symbol_file_command(ko, "hello", guest)
    assert cmd.startswith(f"add-symbol-file {ko} 0xffffffffc0200000 ")
    assert "-s .data 0xffffffffc0204000" in cmd and "-s .init.text 0xffffffffc0210000" in cmd
    assert "-s .text " not in cmd
    with pytest.raises(KdkError, match="is not the one in"):
        gdb.symbol_file_command(ko, "hello", guest.replace(build_id, "00" * 36))
    with pytest.raises(KdkError, match=r"no \.text address"):
        gdb.symbol_file_command(ko, "hello", "sections .data\n0x10\nbuild-id " + build_id)


def test_a_marker_names_the_live_gdb_session(tmp_path: Path) -> None:
    assert gdb.holder(tmp_path) is None
    with gdb.holding(tmp_path):
        assert gdb.holder(tmp_path) == os.getpid()
        with pytest.raises(gdb.GuestHeld, match=r"stopped in gdb \(kdk gdb, pid \d+\)"):
            gdb.check_not_held(tmp_path, KdkError("no answer"))
    assert gdb.holder(tmp_path) is None
    (tmp_path / gdb.MARKER).write_text("999999999\n")  # a gdb that died: not held
    assert gdb.holder(tmp_path) is None


def _read_until(proc: subprocess.Popen[str], text: str, seen: list[str], timeout: float) -> None:
    """Read gdb's output into `seen` until a line contains `text`."""
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            break
        seen.append(line)
        if text in line:
            return
    proc.kill()
    pytest.fail(f"gdb never printed {text!r}:\n{''.join(seen)}")


def test_a_breakpoint_in_a_loaded_driver_is_hit_by_a_write_from_another_command(
    vm: Kdk, tmp_path: Path
) -> None:
    vm.load("kdkchar")
    fifo = tmp_path / "go-on"
    os.mkfifo(fifo)
    argv = vm.gdb_command("kdkchar", ["-nx", "-batch", "-ex", "break kdkchar_write",
                                      "-ex", "continue", "-ex", "bt 1", "-ex", "print count",
                                      "-ex", f"shell head -c1 {fifo} >/dev/null"])  # fmt: skip
    written: list[Result] = []
    writer = threading.Thread(target=lambda: written.append(Kdk(vm=session_vm()).exec(
        ["python3", "-c", "import os; fd = os.open('/dev/kdkchar0', os.O_WRONLY); "
                          "print(os.write(fd, b'hello gdb'))"], timeout=120)))  # fmt: skip
    seen: list[str] = []
    with gdb.holding(vm.backend.state.path):
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            _read_until(proc, "Breakpoint 1 at", seen, 60)
            writer.start()  # a write from another kdk command, once the breakpoint is set
            _read_until(proc, "$1 = ", seen, 120)
            # gdb holds the guest stopped: another command says so, no reboot
            pid = vm.backend.require().pid
            with pytest.raises(gdb.GuestHeld):
                Kdk(vm=session_vm(), say=say).exec("true", timeout=60)
            assert vm.backend.require().pid == pid
            with fifo.open("w") as f:  # gdb goes on: detaches at the end of -batch
                f.write("x")
            out, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
    writer.join(timeout=120)
    text = "".join(seen) + out
    assert "Breakpoint 1, kdkchar_write (" in text
    assert "#0  kdkchar_write (" in text and "at /" in text and "kdkchar.c:" in text
    assert "$1 = 9" in text  # the count argument of the write(2)
    assert proc.returncode == 0 and written and written[0].stdout == b"9\n"
