"""The parser of the kernel's checks' reports, on real console logs of
kdk's debug kernel (6.1.192-kdk-debug: KASAN, lockdep, DEBUG_ATOMIC_SLEEP,
UBSAN), each captured from a trigger of kmods/faulty or kmods/sync."""

from __future__ import annotations

from pathlib import Path

from kdk.klog import reports

from .conftest import DATA


def split(name: str) -> tuple[list[str], list[reports.Report]]:
    crashes, found = reports.split((DATA / name).read_text())
    return [c.kind for c in crashes], found


def test_kasan_out_of_bounds_names_the_access_and_the_allocation() -> None:
    crashes, [r] = split("console-kasan-kdk-debug.log")
    assert crashes == []  # not a crash: the kernel goes on
    assert (r.check, r.kind, r.function, r.module) == (
        "KASAN",
        "slab-out-of-bounds",
        "faulty_overflow",
        "faulty",
    )
    assert r.detail == "write of size 1 by task sh/204"
    assert r.allocated == ["faulty_overflow [faulty]", "trigger_write [faulty]", "vfs_write"]
    assert r.freed == []
    assert r.trace == ["faulty_overflow [faulty]", "trigger_write [faulty]", "vfs_write"]
    assert r.summary() == "KASAN: slab-out-of-bounds in faulty_overflow [faulty]"


def test_kasan_use_after_free_names_who_freed_it() -> None:
    _, [r] = split("console-kasan-uaf-kdk-debug.log")
    assert r.summary() == "KASAN: use-after-free in faulty_uaf [faulty]"
    assert r.detail == "write of size 1 by task sh/119"
    assert r.allocated[:2] == ["faulty_uaf [faulty]", "trigger_write [faulty]"]
    assert r.freed[:2] == ["faulty_uaf [faulty]", "trigger_write [faulty]"]
    assert r.format(Path("/c.log")).splitlines() == [
        "kernel report: KASAN: use-after-free in faulty_uaf [faulty]",
        "  write of size 1 by task sh/119",
        "  allocated by: faulty_uaf [faulty] < trigger_write [faulty] < vfs_write",
        "  freed by: faulty_uaf [faulty] < trigger_write [faulty] < vfs_write",
        "  call trace: faulty_uaf [faulty] < trigger_write [faulty] < vfs_write",
        "  console log: /c.log",
    ]


def test_kasan_double_free() -> None:
    _, [r] = split("console-kasan-doublefree-kdk-debug.log")
    assert r.summary() == "KASAN: double-free in faulty_doublefree [faulty]"
    assert r.detail == "free by task sh/121"
    assert r.freed[0] == "faulty_doublefree [faulty]"


def test_lockdep_circular_dependency_names_both_locks_and_both_functions() -> None:
    crashes, [r] = split("console-lockdep-kdk-debug.log")
    assert crashes == []
    assert (r.check, r.kind) == ("lockdep", "possible circular locking dependency detected")
    assert (r.function, r.module) == ("sync_take_ba", "sync")
    assert r.locks == [
        "sync_lock_a (at sync_take_ba [sync])",
        "sync_lock_b (at sync_take_ba [sync])",
    ]
    assert r.chain == ["sync_lock_b taken in sync_take_ab [sync]"]
    assert r.format().splitlines()[:3] == [
        "kernel report: lockdep: possible circular locking dependency detected"
        " in sync_take_ba [sync]",
        "  locks: sync_lock_a (at sync_take_ba [sync]); sync_lock_b (at sync_take_ba [sync])",
        "  earlier: sync_lock_b taken in sync_take_ab [sync]",
    ]


def test_lockdep_inconsistent_lock_state_names_the_lock_and_both_uses() -> None:
    crashes, [r] = split("console-lockdep-irq-kdk-debug.log")
    assert crashes == []
    assert r.format().splitlines() == [
        "kernel report: lockdep: inconsistent lock state in sync_irq_timer [sync]",
        "  inconsistent {SOFTIRQ-ON-W} -> {IN-SOFTIRQ-W} usage.",
        "  locks: sync_irq_lock (at sync_irq_timer [sync])",
        "  earlier: sync_irq_lock {SOFTIRQ-ON-W} taken in sync_irq_unsafe [sync]",
        "  call trace: sync_irq_timer [sync] < call_timer_fn < __run_timers",
    ]


def test_lockdep_lock_held_into_user_space_names_where_it_was_taken() -> None:
    crashes, [r] = split("console-lockdep-held-kdk-debug.log")
    assert crashes == []
    assert r.format().splitlines() == [
        "kernel report: lockdep: lock held when returning to user space in sync_hold [sync]",
        "  locks: sync_held_lock (at sync_hold [sync])",
    ]


def test_sleeping_in_atomic_context_names_the_modules_function() -> None:
    crashes, [r] = split("console-atomic-kdk-debug.log")
    assert crashes == []  # oops.parse alone calls this "BUG: ..." a crash
    assert r.summary() == (
        "sleep in atomic: sleeping function called from invalid context"
        " in sync_sleep_in_atomic [sync]"
    )
    assert r.where == "include/linux/sched/mm.h:274"
    assert r.trace[0] == "sync_sleep_in_atomic [sync]"  # the kernel's checking skipped


def test_ubsan_names_the_kind_the_line_and_the_function() -> None:
    crashes, [r] = split("console-ubsan-kdk-debug.log")
    assert crashes == []
    assert r.summary() == "UBSAN: shift-out-of-bounds in faulty_shift [faulty]"
    assert r.where == "/work/wt/reports/kmods/faulty/faulty.c:170"
    assert r.detail == "shift exponent 32 is too large for 32-bit type 'int'"


def test_kcsan_names_the_racing_function_and_both_accesses() -> None:
    """kmods/sync's race file on the KCSAN kernel: a thread and a write(2)
    both in sync_race_inc."""
    crashes, [r] = split("console-kcsan-race-kdk-kcsan.log")
    assert crashes == []
    assert r.summary() == "KCSAN: data-race in sync_race_inc [sync]"
    assert r.accesses == [
        "write of 8 bytes by task 110 at sync_race_inc [sync] < race_write [sync]"
        " < full_proxy_write",
        "read of 8 bytes by task 111 at sync_race_inc [sync] < sync_race_fn [sync] < kthread",
    ]
    assert r.detail == "value changed: 0x0000000000003d10 -> 0x0000000000003de6"


def test_kcsan_with_one_side_unknown_names_its_function() -> None:
    text = (
        "BUG: KCSAN: data-race in sync_race_inc+0x1e/0x50 [sync]\n\n"
        "race at unknown origin, with read to 0xffffffffa00024c0 of 8 bytes by task 111 on cpu 1:\n"
        " sync_race_inc+0x1e/0x50 [sync]\n"
    )
    [r] = reports.parse(text)
    assert r.summary() == "KCSAN: data-race in sync_race_inc [sync]"
    assert r.accesses == ["read of 8 bytes by task 111 at sync_race_inc [sync]"]


def test_a_report_followed_by_a_crash_keeps_the_crash() -> None:
    """faulty's first uaf wrote over KASAN's quarantine link in the freed
    object: KASAN reported it, then the kernel crashed on the link."""
    crashes, [r] = split("console-kasan-then-gpf-kdk-debug.log")
    assert r.summary() == "KASAN: use-after-free in faulty_uaf [faulty]"
    assert crashes == ["general protection fault"]
    assert len(r.trace) == 3  # the crash's trace is not the report's


def test_crash_logs_hold_no_reports() -> None:
    for name in ("console-warn-null-oops-panic.log", "console-bug.log", "console-slub-debug.log"):
        crashes, found = split(name)
        assert crashes and found == [], name


def test_kmemleak_names_the_modules_leaks_only() -> None:
    listed = (DATA / "kmemleak-faulty-kdk-debug.txt").read_text()
    (r,) = reports.leaks(listed, {"faulty"})
    assert r.format().splitlines() == [
        "kernel report: kmemleak: unreferenced object in faulty_leak [faulty]",
        "  64 bytes at 0xffff888008fc1a80",
        "  allocated by: faulty_leak [faulty] < trigger_write [faulty] < vfs_write",
    ]
    assert reports.leaks(listed, {"sync"}) == []  # another module's, or the kernel's
    assert reports.leaks("", {"faulty"}) == []
