"""kdk gdb: the command line it builds, and gdb on a real guest through QEMU's stub."""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from kdk.api import Kdk
from kdk.debug import gdb
from kdk.errors import GuestHeld, KdkError
from kdk.guest.ssh import Result
from kdk.kernel import Kernel
from kdk.modules.build import build
from kdk.project import ModuleSource
from kdk.session import check_not_held
from kdk.state import GDB_MARKER, gdb_holder
from kdk.testing import session_vm
from kdk.ui import say

from .conftest import PROJECT


def test_gdb_attaches_to_the_socket_and_loads_the_module_after_it(tmp_path: Path) -> None:
    with pytest.raises(KdkError, match="the VM has no gdb stub"):
        gdb.gdb_argv(tmp_path, None, None)
    (tmp_path / "gdb.sock").touch()
    argv = gdb.gdb_argv(tmp_path, Path("/c/vmlinux"), "add-symbol-file m.ko 0x10", ["-batch"])
    assert argv[1:3] == ["-q", "/c/vmlinux"]
    assert argv[3:5] == ["-ex", f"target remote {tmp_path}/gdb.sock"]
    assert argv[5:] == [
        "-ex",
        "set confirm off",
        "-ex",
        "add-symbol-file m.ko 0x10",
        "-ex",
        "set confirm on",
        "-batch",
    ]
    bare = gdb.gdb_argv(tmp_path, None, None)
    assert bare[1:] == ["-q", "-ex", f"target remote {tmp_path}/gdb.sock"]


@pytest.mark.kbuild
def test_sections_at_the_guests_addresses_and_the_build_id_checked(
    tmp_path: Path, kdk_kernel: Kernel
) -> None:
    shutil.copytree(
        PROJECT / "kmods" / "hello", tmp_path / "hello", ignore=shutil.ignore_patterns("*.*o")
    )
    src = ModuleSource("hello", tmp_path / "hello")
    ko = build(src, kdk_kernel, tmp_path / "stamps").main_module("hello")
    build_id = gdb.ko_sections(ko)[1]
    guest = "\n".join(
        [
            "sections .data .init.text .text __versions",
            "0xffffffffc0204000",
            "0xffffffffc0210000",
            "0xffffffffc0200000",
            "0xffffffffc0205000",
            f"build-id {build_id}",
        ]
    )
    cmd = gdb.symbol_file_command(ko, "hello", guest, tmp_path / "gdb")
    linked = tmp_path / "gdb" / "hello.elf"
    assert cmd == f"add-symbol-file {linked}"
    with linked.open("rb") as f:  # each section where the guest put it
        placed = {s.name: s["sh_addr"] for s in ELFFile(f).iter_sections()}
    assert placed[".data"] == 0xFFFFFFFFC0204000  # (hello's .text is empty: left out)
    assert placed[".init.text"] == 0xFFFFFFFFC0210000
    with pytest.raises(KdkError, match="is not the one in"):
        gdb.symbol_file_command(ko, "hello", guest.replace(build_id, "00" * 36), tmp_path)
    with pytest.raises(KdkError, match=r"no \.text address"):
        gdb.symbol_file_command(ko, "hello", "sections .data\n0x10\nbuild-id " + build_id, tmp_path)


def test_kernel_function_names_from_kallsyms_in_an_elf_file(tmp_path: Path) -> None:
    kallsyms = "\n".join(
        [
            "ffffffff81000000 T _stext",
            "ffffffff81000040 t early_idt",
            "ffffffff81367160 T vfs_write",
            "ffffffff82000000 D some_data",
            "ffffffffc0200000 t kdkchar_write\t[kdkchar]",
        ]
    )
    elf = gdb.kallsyms_elf(kallsyms, tmp_path / "k.elf")
    nm = subprocess.run(["nm", "-S", "-n", elf], capture_output=True, text=True, check=True)
    rows = [line.split() for line in nm.stdout.splitlines()]
    assert [(r[0], r[3]) for r in rows] == [
        ("ffffffff81000000", "_stext"),
        ("ffffffff81000040", "early_idt"),
        ("ffffffff81367160", "vfs_write"),
    ]
    assert int(rows[0][1], 16) == 0x40 and {r[2] for r in rows} == {"T"}
    with pytest.raises(KdkError, match="no kernel symbols"):
        gdb.kallsyms_elf("", tmp_path / "none.elf")


def test_a_marker_names_the_live_gdb_session(tmp_path: Path) -> None:
    assert gdb_holder(tmp_path) is None
    with gdb.holding(tmp_path):
        assert gdb_holder(tmp_path) == os.getpid()
        with pytest.raises(GuestHeld, match=r"stopped in gdb \(kdk gdb, pid \d+\)"):
            check_not_held(tmp_path, KdkError("no answer"))
    assert gdb_holder(tmp_path) is None
    (tmp_path / GDB_MARKER).write_text("999999999\n")  # a gdb that died: not held
    assert gdb_holder(tmp_path) is None


def _pump_lines(proc: subprocess.Popen[str], lines: queue.Queue[str]) -> None:
    """Put each line gdb prints into `lines` (a thread: reads block)."""
    for line in proc.stdout or []:
        lines.put(line)


def _read_until(lines: queue.Queue[str], text: str, seen: list[str], timeout: float) -> None:
    """Take gdb's output lines (from a reader thread) into `seen` until one
    contains `text`; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            seen.append(lines.get(timeout=left))
        except queue.Empty:
            break
        if text in seen[-1]:
            return
    pytest.fail(f"gdb did not print {text!r} in {timeout:g} s:\n{''.join(seen)}")


def test_a_breakpoint_in_a_loaded_driver_is_hit_by_a_write_from_another_command(
    vm: Kdk, tmp_path: Path
) -> None:
    vm.load("kdkchar")
    fifo = tmp_path / "go-on"
    os.mkfifo(fifo)
    argv = vm.gdb_command(
        "kdkchar",
        [
            "-nx",
            "-batch",
            "-ex",
            "break kdkchar_write",
            "-ex",
            "continue",
            "-ex",
            "bt 2",
            "-ex",
            "print count",
            "-ex",
            f"shell head -c1 {fifo} >/dev/null",
        ],
    )
    written: list[Result] = []
    writer = threading.Thread(
        target=lambda: written.append(
            Kdk(vm=session_vm()).exec(
                [
                    "python3",
                    "-c",
                    "import os; fd = os.open('/dev/kdkchar0', os.O_WRONLY); "
                    "print(os.write(fd, b'hello gdb'))",
                ],
                timeout=120,
            )
        )
    )
    seen: list[str] = []
    with gdb.holding(vm.backend.state.path):
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump_lines, args=(proc, lines), daemon=True).start()
        try:
            _read_until(lines, "Breakpoint 1 at", seen, 60)
            writer.start()  # a write from another kdk command, once the breakpoint is set
            _read_until(lines, "#1  ", seen, 120)  # the backtrace: the guest sits on the breakpoint
            # gdb holds the guest stopped: another command says so, no reboot
            pid = vm.backend.require().pid
            with pytest.raises(GuestHeld):
                Kdk(vm=session_vm(), say=say).exec("true", timeout=60)
            assert vm.backend.require().pid == pid
            with fifo.open("w") as f:  # gdb goes on: detaches at the end of -batch
                f.write("x")
            assert proc.wait(timeout=60) == 0
        finally:
            proc.kill()
    writer.join(timeout=120)
    time.sleep(0.1)  # the reader thread's last lines
    text = "".join(seen) + "".join(lines.queue)
    assert written and written[0].stdout == b"9\n"  # the write went on after gdb detached
    source = (PROJECT / "drivers" / "kdkchar" / "kdkchar.c").read_text().splitlines()
    first = source.index("static ssize_t kdkchar_write(struct file *file, const char __user *ubuf,")
    opening = next(n for n in range(first, len(source)) if source[n] == "{") + 1
    assert re.search(rf"^#0  \w+ \(.*\) at /\S+/kdkchar\.c:{opening}$", text, re.M)
    assert re.search(r"^#1  0x[0-9a-f]+ in vfs_write \(\)$", text, re.M)  # kallsyms' name
    assert "Breakpoint 1, kdkchar_write (" in text and "#0  kdkchar_write (" in text
    assert "$1 = 9" in text  # the count argument of the write(2)
