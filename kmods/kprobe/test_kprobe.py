"""kprobe in the guest: the hits counter follows the calls of the probed
function (kernel_clone by default, or another symbol), and a symbol that
does not exist or may not be probed makes insmod fail."""

from __future__ import annotations

import re

import pytest

from kdk.api import Kdk
from kdk.errors import LoadFailed
from kdk.testing import sh

pytestmark = pytest.mark.module("kprobe")

DIR = "/sys/kernel/debug/kdk_kprobe"
HITS = f"{DIR}/hits"


def hits_around(vm: Kdk, commands: str) -> int:
    """How much hits moved while the shell ran `commands`; the counter is
    read with the shell's own `read`, which starts no process."""
    a, b = sh(vm, f"read a < {HITS}; {commands}; read b < {HITS}; echo $a $b").split()
    return int(b) - int(a)


def removed_after(text: str, symbol: str) -> int:
    """The hits in the unload line."""
    m = re.fullmatch(rf"kprobe: removed probe on {symbol} after (\d+) hits", text)
    assert m, text
    return int(m.group(1))


def test_load_and_unload_twice_cleanly(vm: Kdk) -> None:
    for _ in range(2):
        text = vm.load("kprobe").log[-1].text
        # At the entry: +0x0, or +0x4 past the ENDBR64 a kernel built with
        # indirect branch tracking (X86_KERNEL_IBT: Debian's 6.12) starts with.
        at = r"kernel_clone\+0x[04]/0x[0-9a-f]+"
        assert re.fullmatch(rf"kprobe: probe on kernel_clone at {at}", text)
        assert sh(vm, f"stat -c %a {HITS}") == "444\n"
        log = vm.unload("kprobe").log
        assert len(log) == 1
        removed_after(log[0].text, "kernel_clone")
        assert not vm.exec(f"test -e {DIR} || test -e /sys/module/kprobe").ok


def test_hits_count_the_processes_started(vm: Kdk) -> None:
    vm.load("kprobe")
    assert sh(vm, "cat /sys/module/kprobe/parameters/symbol") == "kernel_clone\n"
    # every external command is one fork (kernel_clone) at least; other
    # processes in the guest may add some
    assert hits_around(vm, "i=0; while [ $i -lt 10 ]; do /bin/true; i=$((i+1)); done") >= 10
    last = int(sh(vm, f"cat {HITS}"))
    assert removed_after(vm.unload("kprobe").log[-1].text, "kernel_clone") >= last


def test_another_symbol_is_probed(vm: Kdk) -> None:
    text = vm.load("kprobe", ["symbol=do_sys_openat2"]).log[-1].text
    assert re.fullmatch(r"kprobe: probe on do_sys_openat2 at do_sys_openat2\+0x0/0x[0-9a-f]+", text)
    assert sh(vm, "cat /sys/module/kprobe/parameters/symbol") == "do_sys_openat2\n"
    # ten opens by shell redirections, with no process started
    opens = "for i in 0 1 2 3 4 5 6 7 8 9; do : < /proc/version; done"
    assert hits_around(vm, opens) >= 10
    removed_after(vm.unload("kprobe").log[-1].text, "do_sys_openat2")


def test_a_symbol_that_does_not_exist_fails_the_load(vm: Kdk) -> None:
    with pytest.raises(LoadFailed) as exc:
        vm.load("kprobe", ["symbol=no_such_function"])
    assert str(exc.value) == (
        "insmod kprobe failed: init returned -ENOENT (2) (parameters: symbol=no_such_function)"
    )
    assert "kprobe: register_kprobe(no_such_function) failed: -2" in exc.value.details
    assert not vm.exec(f"test -e {DIR} || test -e /sys/module/kprobe").ok


def test_a_function_that_may_not_be_probed_fails_the_load(vm: Kdk) -> None:
    # kprobes' own int3 handler is on the kprobes blacklist
    with pytest.raises(LoadFailed) as exc:
        vm.load("kprobe", ["symbol=kprobe_int3_handler"])
    assert str(exc.value) == (
        "insmod kprobe failed: init returned -EINVAL (22) (parameters: symbol=kprobe_int3_handler)"
    )
    assert "kprobe: register_kprobe(kprobe_int3_handler) failed: -22" in exc.value.details
    assert not vm.exec(f"test -e {DIR} || test -e /sys/module/kprobe").ok
