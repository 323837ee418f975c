"""The crash-report parser, on real console logs of the Debian 6.1 guest."""

from __future__ import annotations

from pathlib import Path

from kdk.modules import oops, taint

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
    text = "\n".join([
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
    ])  # fmt: skip
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
