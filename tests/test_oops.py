"""The crash-report parser, on real console logs of the Debian 6.1 guest."""

from __future__ import annotations

from pathlib import Path

from kdk.klog import oops
from kdk.modules import taint

from .conftest import DATA


def crashes(name: str) -> list[oops.Crash]:
    return oops.parse((DATA / name).read_text())


def test_a_warning_then_a_null_dereference_that_panics() -> None:
    warn, null = crashes("console-warn-null-oops-panic.log")
    assert warn.kind == "WARNING at /work/main/kmods/faulty/faulty.c:51"
    assert (warn.function, warn.module) == ("faulty_warn", "faulty")
    assert not warn.fatal and warn.panic == ""
    assert null.kind == "BUG: kernel NULL pointer dereference"
    assert (null.function, null.module) == ("faulty_crash", "faulty")
    assert null.fatal and null.panic == "Fatal exception"
    assert null.trace[:3] == ["trigger_write.cold [faulty]", "vfs_write", "ksys_write"]
    assert not any(f.startswith("?") or "page_add" in f for f in null.trace)  # '?' frames skipped


def test_kernel_bug_is_one_report_with_its_panic() -> None:
    (bug,) = crashes("console-bug.log")
    assert bug.kind == "kernel BUG at /work/main/kmods/faulty/faulty.c:57"
    assert (bug.function, bug.module) == ("faulty_bug", "faulty")
    assert bug.panic == "Fatal exception"


def test_a_bare_panic_blames_the_first_frame_past_the_machinery() -> None:
    (panic,) = crashes("console-sysrq-panic.log")
    assert panic.kind == "panic" and panic.panic == "sysrq triggered crash"
    assert (panic.function, panic.module) == ("sysrq_handle_crash", "")
    assert panic.trace[0] == "sysrq_handle_crash"


def test_a_real_soft_lockup_that_panics() -> None:
    (lockup,) = crashes("console-soft-lockup.log")
    assert lockup.kind == "soft lockup"
    assert (lockup.function, lockup.module) == ("faulty_lockup", "faulty")
    assert lockup.panic == "softlockup: hung tasks"
    assert lockup.trace[0] == "trigger_write.cold [faulty]"


def test_the_report_block_is_short_and_names_the_log() -> None:
    null = crashes("console-warn-null-oops-panic.log")[1]
    block = null.format(Path("/s/console.log")).splitlines()
    assert block[0] == "kernel crash: BUG: kernel NULL pointer dereference in faulty_crash [faulty]"
    assert block[-1] == "  console log: /s/console.log"
    assert len(block) <= 6 and all(len(line) < 160 for line in block)


def test_lockups_and_faults_without_timestamps() -> None:
    text = "\n".join(
        [
            "watchdog: BUG: soft lockup - CPU#1 stuck for 11s! [insmod:170]",
            "RIP: 0010:spin_forever+0x4/0x10 [spinner]",
            "Call Trace:",
            " <TASK>",
            " spinner_init+0x10/0x20 [spinner]",
            " do_one_initcall+0x41/0x200",
            "Kernel panic - not syncing: softlockup: hung tasks",
            "general protection fault, probably for non-canonical address 0xdead: 0000 [#2] SMP",
            "RIP: 0010:list_del+0x4/0x10",
            "Call Trace:",
            " gp_exit+0x1/0x2 [gp]",
        ]
    )
    lockup, gpf = oops.parse(text)
    assert (lockup.kind, lockup.function, lockup.module) == (
        "soft lockup",
        "spin_forever",
        "spinner",
    )
    assert lockup.panic == "softlockup: hung tasks"
    assert (gpf.kind, gpf.function, gpf.module) == ("general protection fault", "list_del", "gp")


def test_a_clean_boot_has_no_report() -> None:
    boot = (DATA / "console-sysrq-panic.log").read_text().split("sysrq:")[0]
    assert oops.parse(boot) == []


def test_new_taint_flags_beyond_out_of_tree_and_unsigned() -> None:
    o_e = 1 << 12 | 1 << 13
    assert taint.new_flags(0, o_e) == []
    assert taint.new_flags(o_e, o_e | 1 << 9) == ["W (kernel issued a warning)"]
    assert taint.new_flags(1 << 9, 1 << 9) == []  # already there before


def test_slub_debug_reports_name_the_kind_and_the_module_functions() -> None:
    uaf, overflow, doublefree, count = crashes("console-slub-debug.log")
    assert (uaf.kind, uaf.cache) == ("Poison overwritten", "kdk_faulty_uaf")
    assert (uaf.function, uaf.module) == ("faulty_uaf", "faulty")  # not faulty_uaf.cold
    assert uaf.allocated == uaf.freed == "faulty_uaf [faulty]"
    assert uaf.trace[:2] == ["faulty_uaf.cold [faulty]", "trigger_write [faulty]"]  # no mm/
    assert (overflow.kind, overflow.function) == ("Right Redzone overwritten", "faulty_overflow")
    assert overflow.allocated == "faulty_overflow [faulty]" and overflow.freed == ""
    assert (doublefree.kind, doublefree.function) == ("Object already free", "faulty_doublefree")
    assert doublefree.freed == "faulty_doublefree [faulty]"
    # freeing the object that kept the slab in use then finds the count wrong
    assert count.kind.startswith("Wrong object count") and count.function == "faulty_doublefree"
    for c in (uaf, overflow, doublefree):  # SLUB repaired it: the kernel goes on
        assert c.memory and not c.fatal and c.what == "reported a memory error"


def test_a_memory_error_block_says_who_allocated_and_freed() -> None:
    block = crashes("console-slub-debug.log")[0].format().splitlines()
    assert block[0] == "kernel memory error: Poison overwritten in faulty_uaf [faulty]"
    assert block[2:4] == ["  allocated by: faulty_uaf [faulty]", "  freed by: faulty_uaf [faulty]"]


def test_linux_6_12_slub_reports_and_a_kfence_report() -> None:
    """6.12 names what was overwritten on a line before "BUG ...: Object
    corrupt" and adds a WARNING with the call trace; KFENCE (which 6.12 has)
    caught the one overflow whose object it had sampled. An excerpt of one
    real boot: the 16 overflow reports before KFENCE's are left out."""
    uaf, overflow, doublefree, kfence = crashes("console-6.12-slub-kfence.log")
    assert (uaf.kind, uaf.function, uaf.freed) == (
        "Poison overwritten",
        "faulty_uaf",
        "faulty_uaf [faulty]",
    )
    assert (overflow.kind, overflow.function) == ("Right Redzone overwritten", "faulty_overflow")
    assert (doublefree.kind, doublefree.function) == ("Object already free", "faulty_doublefree")
    assert all(c.trace[0] == f"{c.function} [faulty]" for c in (uaf, overflow, doublefree))
    assert kfence.kind == "BUG: KFENCE: memory corruption" and kfence.cache == "kdk_faulty"
    assert (kfence.function, kfence.module) == ("faulty_overflow", "faulty")
    assert kfence.allocated == kfence.freed == "faulty_overflow [faulty]"
    assert kfence.trace[:2] == ["faulty_overflow [faulty]", "trigger_write [faulty]"]
    assert not any(c.fatal for c in (uaf, overflow, doublefree, kfence))


def test_kfence_and_kasan_headlines_name_the_function() -> None:
    text = "\n".join(
        [
            "BUG: KFENCE: use-after-free write in faulty_uaf+0x2a/0x60 [faulty]",
            "BUG: KASAN: slab-out-of-bounds in memcpy_orig.isra.0+0x5/0x10",
        ]
    )
    kfence, kasan = oops.parse(text)
    assert kfence.kind == "BUG: KFENCE: use-after-free write"
    assert (kfence.function, kfence.module) == ("faulty_uaf", "faulty")
    assert kasan.kind == "BUG: KASAN: slab-out-of-bounds" and kasan.function == "memcpy_orig"
    assert kfence.memory and not kfence.fatal


def test_a_real_kasan_report_of_kdks_debug_kernel_names_the_module_function() -> None:
    """faulty's `overflow` on 6.1.192-kdk-debug (kdk kernel build --debug)."""
    (kasan,) = crashes("console-kasan-kdk-debug.log")
    assert kasan.kind == "BUG: KASAN: slab-out-of-bounds"
    assert (kasan.function, kasan.module) == ("faulty_overflow", "faulty")
    assert kasan.memory and not kasan.fatal


def test_a_double_free_without_debug_is_a_kernel_bug_called_from_the_module() -> None:
    (bug,) = crashes("console-doublefree-nodebug.log")
    assert bug.kind.startswith("kernel BUG at mm/slub.c:") and bug.fatal
    assert (bug.function, bug.caller) == ("kmem_cache_free", "faulty_doublefree [faulty]")
    assert bug.summary().endswith(" in kmem_cache_free, called from faulty_doublefree [faulty]")
