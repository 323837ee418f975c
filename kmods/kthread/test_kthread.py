"""kthread in the guest: the kdk_kthread worker ticks until unload, its
interval can be changed at run time within 1..10000 ms, and rmmod stops it
promptly even in the middle of a long sleep."""

from __future__ import annotations

import errno
import re

import pytest

from kdk.api import Kdk
from kdk.errors import LoadFailed
from kdk.testing import check_writes, log_mark, log_since, sh, wait_until

pytestmark = pytest.mark.module("kthread")

PARAMS = "/sys/module/kthread/parameters"
TICKS = f"{PARAMS}/ticks"
INTERVAL = f"{PARAMS}/interval_ms"


def worker_pid(vm: Kdk) -> int:
    """The pid of the one kdk_kthread, checked to be a kernel thread."""
    lines = sh(vm, "ps -eo pid=,ppid=,args=").splitlines()
    ours = [line.split() for line in lines if line.split()[2:] == ["[kdk_kthread]"]]
    assert len(ours) == 1, lines
    pid, ppid = int(ours[0][0]), int(ours[0][1])
    assert ppid == 2  # a child of kthreadd
    assert sh(vm, f"cat /proc/{pid}/comm") == "kdk_kthread\n"
    return pid


def test_load_and_unload_twice_cleanly(vm: Kdk) -> None:
    for _ in range(2):
        seq = log_mark(vm)
        vm.load("kthread")
        wait_until(vm, f"[ $(cat {TICKS}) -ge 1 ]")
        unload = [r.text for r in vm.unload("kthread").log]
        assert unload[0] == "kthread: worker stopping"
        assert re.fullmatch(r"kthread: stopped after [1-9]\d* ticks", unload[1])
        assert len(unload) == 2
        assert [r.text for r in log_since(vm, seq)][-3:] == [
            "kthread: worker started, interval_ms=100",
            *unload,
        ]
        assert not vm.exec("pgrep -x kdk_kthread || test -e /sys/module/kthread").ok


def test_the_worker_is_a_kernel_thread_that_keeps_ticking(vm: Kdk) -> None:
    vm.load("kthread", ["interval_ms=50"])
    wait_until(vm, f"[ $(cat {TICKS}) -ge 1 ]")
    worker_pid(vm)
    out = sh(
        vm,
        f"read u0 x < /proc/uptime; read a < {TICKS}; sleep 2; "
        f"read u1 x < /proc/uptime; read b < {TICKS}; echo $u0 $u1 $a $b",
    )
    u0, u1, a, b = out.split()
    elapsed, ticks = float(u1) - float(u0), int(b) - int(a)
    # it keeps ticking, and never more often than every 50 ms
    assert 2 <= ticks <= elapsed / 0.050 + 1, (ticks, elapsed)
    worker_pid(vm)  # still the same single thread
    ticks_now = int(sh(vm, f"cat {TICKS}"))
    assert ticks_now >= int(b)
    m = re.fullmatch(r"kthread: stopped after (\d+) ticks", vm.unload("kthread").log[-1].text)
    assert m
    assert int(m.group(1)) >= ticks_now


def test_interval_changes_at_run_time_and_bad_values_are_refused(vm: Kdk) -> None:
    vm.load("kthread")
    modes = sh(vm, f"cd {PARAMS} && stat -c '%n %a' interval_ms ticks")
    assert modes.splitlines() == ["interval_ms 644", "ticks 444"]
    assert sh(vm, f"cat {INTERVAL}") == "100\n"
    check_writes(
        vm,
        [
            (INTERVAL, b"0\n", -errno.EINVAL),
            (INTERVAL, b"-1\n", -errno.EINVAL),
            (INTERVAL, b"10001\n", -errno.EINVAL),
            (INTERVAL, b"abc\n", -errno.EINVAL),
            (INTERVAL, b"99999999999\n", -errno.ERANGE),
            (TICKS, b"0\n", -errno.EACCES),
            (INTERVAL, b"1\n", 2),
            (INTERVAL, b"10000\n", 6),
        ],
    )
    assert sh(vm, f"cat {INTERVAL}") == "10000\n"
    # the new period holds from the next sleep on: with 10 s, ticks stop
    out = sh(vm, f"sleep 0.5; read a < {TICKS}; sleep 1.5; read b < {TICKS}; echo $a $b")
    a, b = out.split()
    assert a == b
    res = vm.exec(f"echo 0 > {INTERVAL}")
    assert not res.ok
    assert res.stderr
    assert sh(vm, f"cat {INTERVAL}") == "10000\n"


@pytest.mark.parametrize(
    ("param", "log"),
    [
        ("interval_ms=0", "kthread: `0' invalid for parameter `interval_ms'"),
        ("interval_ms=10001", "kthread: `10001' invalid for parameter `interval_ms'"),
        ("interval_ms=abc", "kthread: `abc' invalid for parameter `interval_ms'"),
        ("ticks=3", "kthread: `3' invalid for parameter `ticks'"),
    ],
)
def test_a_bad_parameter_at_insmod_fails_the_load(vm: Kdk, param: str, log: str) -> None:
    with pytest.raises(LoadFailed) as exc:
        vm.load("kthread", [param])
    # refused before init ran: EINVAL from interval_ms's check, EPERM from ticks' ->set()
    code = "-EPERM (1)" if param.startswith("ticks") else "-EINVAL (22)"
    assert str(exc.value) == f"insmod kthread failed: {code}: {log}"
    assert log in exc.value.details
    assert not vm.exec("pgrep -x kdk_kthread || test -e /sys/module/kthread").ok


def test_unload_is_prompt_during_a_long_interval(vm: Kdk) -> None:
    """rmmod wakes the worker from its 10 s sleep: by the kernel log's own
    clock, the worker stops before that first sleep would have ended (a
    sleep rmmod could not cut short would end 10 s after the start at the
    earliest), and it never ticked."""
    seq = log_mark(vm)
    vm.load("kthread", ["interval_ms=10000"])
    wait_until(vm, '[ "$(ps -o stat= -C kdk_kthread)" = S ]')  # in its 10 s sleep
    pid = worker_pid(vm)
    sh(vm, "echo 'kdk-test: rmmod' > /dev/kmsg && rmmod kthread")
    assert not vm.exec(f"pgrep -x kdk_kthread || test -e /proc/{pid}").ok
    records = log_since(vm, seq)[-4:]
    assert [r.text for r in records] == [
        "kthread: worker started, interval_ms=10000",
        "kdk-test: rmmod",
        "kthread: worker stopping",
        "kthread: stopped after 0 ticks",
    ]
    started, asked, stopping, _ = records
    assert asked.usec < started.usec + 10_000_000  # rmmod came during the first sleep
    assert stopping.usec < started.usec + 10_000_000, (
        f"the worker stopped {(stopping.usec - asked.usec) / 1e6:.2f} s after rmmod"
    )
