"""sync in the guest: nthreads threads each add iterations to a counter
under a mutex, one under a spinlock and an atomic_t, and no increment is
lost, at load and on every run started through debugfs."""

from __future__ import annotations

import errno
import re
from contextlib import AbstractContextManager, nullcontext

import pytest

from kdk.api import Kdk
from kdk.errors import LoadFailed
from kdk.kernel import Kernel
from kdk.testing import check_writes, expect_report, log_mark, log_since, sh

pytestmark = pytest.mark.module("sync")

DIR = "/sys/kernel/debug/kdk_sync"


def result(n: int) -> str:
    """The line of a run in which no increment was lost."""
    return f"mutex={n} spinlock={n} atomic={n} expected={n}"


def no_worker_left(vm: Kdk) -> bool:
    return not vm.exec("ps -eo comm= | grep '^kdk_sync'").ok


def test_load_and_unload_twice_cleanly(vm: Kdk) -> None:
    for _ in range(2):
        res = vm.load("sync", ["nthreads=2", "iterations=1000"])
        assert [r.text for r in res.log][-2:] == [
            "sync: 2 threads x 1000 iterations",
            f"sync: {result(2000)}",
        ]
        assert sh(vm, f"cat {DIR}/result") == result(2000) + "\n"
        assert no_worker_left(vm)
        assert [r.text for r in vm.unload("sync").log] == ["sync: exit runs=1"]
        assert not vm.exec(f"test -e {DIR} || test -e /sys/module/sync").ok


def test_no_increment_is_lost_with_the_defaults(vm: Kdk) -> None:
    res = vm.load("sync")
    assert [r.text for r in res.log][-2:] == [
        "sync: 4 threads x 100000 iterations",
        f"sync: {result(400000)}",
    ]
    assert sh(vm, f"cat {DIR}/result") == result(400000) + "\n"


@pytest.mark.parametrize(("nthreads", "iterations"), [(1, 1), (8, 25000), (64, 1000), (3, 33333)])
def test_no_increment_is_lost_with_other_sizes(vm: Kdk, nthreads: int, iterations: int) -> None:
    res = vm.load("sync", [f"nthreads={nthreads}", f"iterations={iterations}"])
    expected = nthreads * iterations
    assert [r.text for r in res.log][-2:] == [
        f"sync: {nthreads} threads x {iterations} iterations",
        f"sync: {result(expected)}",
    ]
    assert sh(vm, f"cat {DIR}/result") == result(expected) + "\n"


def test_each_write_to_run_runs_again(vm: Kdk) -> None:
    vm.load("sync", ["nthreads=3", "iterations=20000"])
    assert sh(vm, f"cd {DIR} && stat -c '%n %a' result run") == "result 444\nrun 200\n"
    seq = log_mark(vm)
    # the write returns when its run is over, so result already shows it
    out = sh(vm, f"cd {DIR} && echo 1 > run && cat result && printf anything > run && cat result")
    assert out == (result(60000) + "\n") * 2
    assert [r.text for r in log_since(vm, seq)] == [f"sync: {result(60000)}"] * 2
    assert no_worker_left(vm)
    assert [r.text for r in vm.unload("sync").log] == ["sync: exit runs=3"]


@pytest.mark.parametrize(
    ("param", "log"),
    [
        ("nthreads=0", "sync: nthreads=0 out of range 1..64"),
        ("nthreads=65", "sync: nthreads=65 out of range 1..64"),
        ("iterations=0", "sync: iterations=0 out of range 1..10000000"),
        ("iterations=10000001", "sync: iterations=10000001 out of range 1..10000000"),
    ],
)
def test_an_out_of_range_parameter_fails_the_load(vm: Kdk, param: str, log: str) -> None:
    with pytest.raises(LoadFailed) as exc:
        vm.load("sync", [param])
    assert str(exc.value) == f"insmod sync failed: init returned -EINVAL (22) (parameters: {param})"
    assert log in exc.value.details
    assert "threads x" not in exc.value.details  # refused before any run
    assert not vm.exec(f"test -e {DIR} || test -e /sys/module/sync").ok


def test_the_lock_orders_are_taken_in_sequence_and_never_deadlock(
    vm: Kdk, kdk_kernel: Kernel
) -> None:
    """Both orders just run, one after the other (on a kernel without
    lockdep: nothing to report; with it, see also tests/test_reports_vm.py);
    sleep_in_atomic does nothing without DEBUG_ATOMIC_SLEEP."""
    vm.load("sync", ["nthreads=1", "iterations=1"])
    assert sh(vm, f"cd {DIR} && stat -c '%n %a' lock_order sleep_in_atomic") == (
        "lock_order 200\nsleep_in_atomic 200\n"
    )
    seq = log_mark(vm)
    # lockdep (on until a kernel's first report) reports the second order
    lockdep = vm.exec("grep -Eq '^ *debug_locks: +1$' /proc/lockdep_stats").ok
    expected: AbstractContextManager[object] = (
        expect_report("lockdep") if lockdep else nullcontext()
    )
    with expected:
        check_writes(
            vm,
            [
                (f"{DIR}/lock_order", b"ab\n", 3),
                (f"{DIR}/lock_order", b"ba", 2),
                (f"{DIR}/lock_order", b"ab", 2),
                (f"{DIR}/lock_order", b"abc", -errno.EINVAL),
                (f"{DIR}/lock_order", b"", -errno.EINVAL),
            ],
        )
    assert [r.text for r in log_since(vm, seq)] == [
        f"sync: took the locks in the order {o}" for o in ("ab", "ba", "ab")
    ]
    if kdk_kernel.enabled("CONFIG_DEBUG_ATOMIC_SLEEP"):
        with expect_report("sleep in atomic"):
            vm.exec(f"echo 1 > {DIR}/sleep_in_atomic")
    else:
        check_writes(vm, [(f"{DIR}/sleep_in_atomic", b"1", -errno.EOPNOTSUPP)])


def test_the_racy_counter_says_how_many_increments_stayed(vm: Kdk, kdk_kernel: Kernel) -> None:
    """race: a thread and the writer each do 100000 unlocked "counter++";
    the log says how many of the 200000 stayed (fewer: increments were
    lost to the race). KCSAN, where the kernel has it, reports the race
    (tests/test_reports_vm.py has its block)."""
    vm.load("sync", ["nthreads=1", "iterations=1"])
    seq = log_mark(vm)
    expected: AbstractContextManager[object] = (
        expect_report("KCSAN") if kdk_kernel.enabled("CONFIG_KCSAN") else nullcontext()
    )
    with expected:
        check_writes(vm, [(f"{DIR}/race", b"1", 1)])
    said = [r.text for r in log_since(vm, seq) if r.text.startswith("sync: race: ")]
    assert len(said) == 1, said
    m = re.fullmatch(r"sync: race: (\d+) of 200000 increments", said[0])
    assert m is not None and 0 < int(m.group(1)) <= 200000, said
    assert no_worker_left(vm)
