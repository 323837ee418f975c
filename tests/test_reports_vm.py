"""The debug kernel's checks report a module's bugs in kdk's words: the
triggers of kmods/faulty and kmods/sync, run in one VM of the debug kernel
(conftest's debug_vm), each give one short block naming the check, the
kind, the module's function and the module, and KernelReport (exit 6), not
a crash: the VM is not booted again.

The order matters: lockdep reports one problem per boot and turns itself
off after it, and a KASAN report taints the kernel, which turns lock
debugging off too; so the lockdep tests come first, each on a kernel whose
lock debugging is still on (`lockdep_on` boots the VM again when it is not).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from kdk.api import BootRequest, Kdk
from kdk.errors import KernelReport
from kdk.testing import expect_report, guest_cpus, log_mark, log_since, sh

from .conftest import DEBUG_VM

pytestmark = [pytest.mark.kbuild, pytest.mark.vm, pytest.mark.timeout(3600)]
SYNC = "/sys/kernel/debug/kdk_sync"
FAULTY = "/sys/kernel/debug/kdk_faulty/trigger"


def lock_debugging(k: Kdk) -> bool:
    return re.search(r"^ *debug_locks: +1$", sh(k, "cat /proc/lockdep_stats"), re.M) is not None


def lockdep_on(k: Kdk) -> None:
    """The VM of `k`, with its lock debugging on (booted again when an
    earlier report turned it off)."""
    if not lock_debugging(k):
        kernel = k.backend.require().kernel
        k.down()
        k.up(BootRequest(kernel, cpus=guest_cpus()))
    assert lock_debugging(k)


def test_a_lock_order_inversion_names_both_locks_and_both_functions(debug_vm: Kdk) -> None:
    lockdep_on(debug_vm)
    pid = debug_vm.backend.require().pid
    debug_vm.load("sync", ["nthreads=1", "iterations=1"])
    try:
        sh(debug_vm, f"echo ab > {SYNC}/lock_order")  # one order alone is fine
        seq = log_mark(debug_vm)
        with expect_report("lockdep") as found:
            debug_vm.exec(f"echo ba > {SYNC}/lock_order")
        (e,) = found
        assert str(e) == (
            "the guest kernel reported lockdep: possible circular locking dependency"
            " detected in sync_take_ba [sync]"
        )
        assert e.checks == ["lockdep"]
        assert e.details.splitlines()[1:3] == [
            "  locks: sync_lock_a (at sync_take_ba [sync]); sync_lock_b (at sync_take_ba [sync])",
            "  earlier: sync_lock_b taken in sync_take_ab [sync]",
        ]
        # The writes returned (no deadlock), the kernel goes on, no reboot.
        assert log_since(debug_vm, seq)[-1].text == "sync: took the locks in the order ba"
        assert debug_vm.backend.require().pid == pid
    finally:
        debug_vm.unload("sync")


def test_a_lock_taken_in_and_out_of_softirqs_is_an_inconsistent_lock_state(debug_vm: Kdk) -> None:
    lockdep_on(debug_vm)
    debug_vm.load("sync", ["nthreads=1", "iterations=1"])
    try:
        with expect_report("lockdep") as found:
            debug_vm.exec(f"echo 1 > {SYNC}/irq_unsafe")  # waits for its timer
        assert found[0].details.splitlines()[:4] == [
            "kernel report: lockdep: inconsistent lock state in sync_irq_timer [sync]",
            "  inconsistent {SOFTIRQ-ON-W} -> {IN-SOFTIRQ-W} usage.",
            "  locks: sync_irq_lock (at sync_irq_timer [sync])",
            "  earlier: sync_irq_lock {SOFTIRQ-ON-W} taken in sync_irq_unsafe [sync]",
        ]
    finally:
        debug_vm.unload("sync")


def test_a_lock_held_into_user_space_names_where_it_was_taken(debug_vm: Kdk) -> None:
    lockdep_on(debug_vm)
    debug_vm.load("sync", ["nthreads=1", "iterations=1"])
    try:
        with expect_report("lockdep") as found:
            debug_vm.exec(f"echo 1 > {SYNC}/hold")  # released when sh closes the file
        assert found[0].details.splitlines() == [
            "kernel report: lockdep: lock held when returning to user space in sync_hold [sync]",
            "  locks: sync_held_lock (at sync_hold [sync])",
            f"  console log: {debug_vm.backend.state.console_log}",
        ]
        sh(debug_vm, f"echo 1 > {SYNC}/hold")  # it was released: taken again at once
    finally:
        debug_vm.unload("sync")


def test_sleeping_in_atomic_context_names_the_function(debug_vm: Kdk) -> None:
    debug_vm.load("sync", ["nthreads=1", "iterations=1"])
    try:
        with expect_report("sleep in atomic") as found:
            debug_vm.exec(f"echo 1 > {SYNC}/sleep_in_atomic")
        assert str(found[0]) == (
            "the guest kernel reported sleep in atomic: sleeping function called from"
            " invalid context in sync_sleep_in_atomic [sync]"
        )
    finally:
        debug_vm.unload("sync")


def test_kasan_use_after_free_through_the_cli_exits_6(debug_vm: Kdk) -> None:
    pid = debug_vm.backend.require().pid
    debug_vm.load("faulty")
    try:
        kdk = [sys.executable, "-m", "kdk.cli"]
        env = {**os.environ, "KDK_VM": DEBUG_VM}
        res = subprocess.run(
            [*kdk, "exec", "sh", "-c", f"echo uaf > {FAULTY}"],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert res.returncode == 6, res.stderr
        block = res.stderr.split("kernel report: ", 1)[1].splitlines()
        assert block[:4] == [
            "KASAN: use-after-free in faulty_uaf [faulty]",
            f"  write of size 1 by task sh/{block[1].rsplit('/', 1)[1]}",
            "  allocated by: faulty_uaf [faulty] < trigger_write [faulty] < vfs_write",
            "  freed by: faulty_uaf [faulty] < trigger_write [faulty] < vfs_write",
        ]
        assert res.stderr.rstrip().endswith(
            "kdk: the guest kernel reported KASAN: use-after-free in faulty_uaf [faulty]"
        )
        assert debug_vm.backend.require().pid == pid  # the kernel went on: no reboot
        with expect_report("KASAN") as found:
            debug_vm.exec(f"echo doublefree > {FAULTY}")
        assert str(found[0]).endswith("KASAN: double-free in faulty_doublefree [faulty]")
    finally:
        debug_vm.unload("faulty")


def test_ubsan_names_the_source_line(debug_vm: Kdk) -> None:
    debug_vm.load("faulty")
    try:
        with expect_report("UBSAN") as found:
            debug_vm.exec(f"echo shift > {FAULTY}")
        lines = found[0].details.splitlines()
        assert lines[0] == "kernel report: UBSAN: shift-out-of-bounds in faulty_shift [faulty]"
        assert lines[1] == "  shift exponent 32 is too large for 32-bit type 'int'"
        assert lines[2].startswith("  at /") and "/kmods/faulty/faulty.c:" in lines[2]
    finally:
        debug_vm.unload("faulty")


def test_expect_report_fails_a_test_without_that_report(debug_vm: Kdk) -> None:
    with pytest.raises(pytest.fail.Exception, match="made no KASAN report"), expect_report("KASAN"):
        debug_vm.exec("true")
    debug_vm.load("faulty")
    try:  # another check's report is not the one expected: it goes on up
        with pytest.raises(KernelReport, match="UBSAN"), expect_report("KASAN"):
            debug_vm.exec(f"echo shift > {FAULTY}")
    finally:
        debug_vm.unload("faulty")


def test_unload_with_leaks_names_what_the_module_leaked(debug_vm: Kdk) -> None:
    """kmemleak lists an object only when two scans found it unreferenced:
    `kdk unload --leaks` scans twice, before rmmod (the module's symbols
    then still name its functions), and clears the list after. kmemleak
    misses a few leaks (3 and 6 of 88 in two runs here, whose pointer it
    still found a copy of), so the module leaks three objects, and at
    least one is named."""
    debug_vm.load("faulty")
    for _ in range(3):  # each its own process: no stale pointer on a live stack
        sh(debug_vm, f"echo leak > {FAULTY}")
    sh(debug_vm, "sleep 5")  # kmemleak's minimum age
    with expect_report("kmemleak") as found:
        debug_vm.unload("faulty", leaks=True)
    lines = found[0].details.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("kernel report: kmemleak")]
    assert 1 <= len(starts) <= 3 and starts[-1] == len(lines) - 3
    for i in starts:
        assert lines[i : i + 3] == [
            "kernel report: kmemleak: unreferenced object in faulty_leak [faulty]",
            lines[i + 1],  # "  64 bytes at 0x<address>"
            "  allocated by: faulty_leak [faulty] < trigger_write [faulty] < vfs_write",
        ]
        assert lines[i + 1].startswith("  64 bytes at 0xffff")
    assert not debug_vm.exec("test -d /sys/module/faulty").ok  # unloaded all the same
    # listed once: the next unload --leaks of a module that leaked nothing
    # is clean, or names only a leak that kmemleak missed above
    listed = {lines[i + 1] for i in starts}
    debug_vm.load("faulty")
    try:
        assert debug_vm.unload("faulty", leaks=True).log[-1].text == "faulty: unloaded"
    except KernelReport as e:
        again = {line for line in e.details.splitlines() if line.startswith("  64 bytes at ")}
        assert again and not again & listed
