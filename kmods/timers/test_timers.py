"""timers in the guest: a periodic timer_list and a periodic hrtimer fire
at about the rate their periods give, the periods shown in debugfs are the
real ones, and out-of-range periods make insmod fail."""

from __future__ import annotations

import re

import pytest

from kdk.api import Kdk
from kdk.errors import LoadFailed
from kdk.testing import sh

pytestmark = pytest.mark.module("timers")

DIR = "/sys/kernel/debug/kdk_timers"
STARTED = re.compile(
    r"timers: started: timer every (\d+) jiffies \((\d+) us, HZ=(\d+)\), hrtimer every (\d+) us"
)
EXIT = re.compile(r"timers: exit timer_count=(\d+) hrtimer_count=(\d+)")
# Generous on purpose: under emulation on a busy host the guest's timers
# run late, so a count may fall well short of what the period gives (the
# low bound only proves the timer re-arms itself: a one-shot counts 1);
# the timer_list re-arms from its last expiry, so after a stall it catches
# up and may count more than the window alone gives.
LOW, HIGH = 0.2, 1.5

# Both counters over 2 s of the guest's clock, read by the shell alone (no
# process started between the reads), with the periods.
MEASURE = (
    f"cd {DIR} && read tp < timer_period_us && read hp < hrtimer_period_us && "
    "read u0 x < /proc/uptime && read t0 < timer_count && read h0 < hrtimer_count && "
    "sleep 2 && "
    "read u1 x < /proc/uptime && read t1 < timer_count && read h1 < hrtimer_count && "
    "echo $tp $hp $u0 $u1 $t0 $t1 $h0 $h1"
)


def started(text: str) -> tuple[int, int, int, int]:
    """(jiffies, timer us, HZ, hrtimer us) from the load line."""
    m = STARTED.fullmatch(text)
    assert m, text
    jiffies, us, hz, hr_us = map(int, m.groups())
    return jiffies, us, hz, hr_us


def exit_counts(text: str) -> tuple[int, int]:
    m = EXIT.fullmatch(text)
    assert m, text
    return int(m.group(1)), int(m.group(2))


def test_load_and_unload_twice_cleanly(vm: Kdk) -> None:
    for _ in range(2):
        jiffies, us, hz, hr_us = started(vm.load("timers").log[-1].text)
        assert (us, hr_us) == (20000, 5000)
        assert jiffies * 1_000_000 // hz == us
        # the counters start from 0 on every load
        before = sh(vm, f"cat {DIR}/timer_count {DIR}/hrtimer_count").split()
        log = vm.unload("timers").log
        assert len(log) == 1
        timer_n, hrtimer_n = exit_counts(log[0].text)
        assert timer_n >= int(before[0]) and hrtimer_n >= int(before[1])
        assert not vm.exec(f"test -e {DIR} || test -e /sys/module/timers").ok


def test_debugfs_files_and_parameters(vm: Kdk) -> None:
    res = vm.load("timers", ["timer_ms=10", "hrtimer_us=2500"])
    jiffies, us, hz, hr_us = started(res.log[-1].text)
    # 10 ms rounded up to whole jiffies (3, i.e. 12000 us, with HZ=250)
    assert jiffies == -(-10 * hz // 1000)
    assert us == jiffies * 1_000_000 // hz
    assert hr_us == 2500
    params = "/sys/module/timers/parameters"
    out = sh(
        vm,
        f"cd {DIR} && stat -c '%n %a' * && cat timer_period_us hrtimer_period_us && "
        f"cat {params}/timer_ms {params}/hrtimer_us",
    )
    assert out.splitlines() == [
        "hrtimer_count 444",
        "hrtimer_period_us 444",
        "timer_count 444",
        "timer_period_us 444",
        str(us),
        "2500",
        "10",
        "2500",
    ]


@pytest.mark.parametrize(
    "params",
    [[], ["timer_ms=10", "hrtimer_us=1000"]],
    ids=["defaults", "timer_ms=10,hrtimer_us=1000"],
)
def test_both_timers_fire_at_about_their_rate(vm: Kdk, params: list[str]) -> None:
    vm.load("timers", params)
    tp, hp, u0, u1, t0, t1, h0, h1 = sh(vm, MEASURE).split()
    elapsed_us = (float(u1) - float(u0)) * 1_000_000
    timer_expected = elapsed_us / int(tp)
    hrtimer_expected = elapsed_us / int(hp)
    timer_n, hrtimer_n = int(t1) - int(t0), int(h1) - int(h0)
    assert LOW * timer_expected <= timer_n <= HIGH * timer_expected + 1, (timer_n, timer_expected)
    assert LOW * hrtimer_expected <= hrtimer_n <= HIGH * hrtimer_expected + 1, (
        hrtimer_n,
        hrtimer_expected,
    )
    assert hrtimer_n > timer_n  # the shorter period fires more often, late or not
    # they stop at unload, with at least the counts seen
    timer_last, hrtimer_last = exit_counts(vm.unload("timers").log[-1].text)
    assert timer_last >= int(t1) and hrtimer_last >= int(h1)


@pytest.mark.parametrize(
    ("param", "log"),
    [
        ("timer_ms=0", "timers: timer_ms=0 out of range 1..10000"),
        ("timer_ms=10001", "timers: timer_ms=10001 out of range 1..10000"),
        ("hrtimer_us=50", "timers: hrtimer_us=50 out of range 100..10000000"),
        ("hrtimer_us=10000001", "timers: hrtimer_us=10000001 out of range 100..10000000"),
    ],
)
def test_an_out_of_range_period_fails_the_load(vm: Kdk, param: str, log: str) -> None:
    with pytest.raises(LoadFailed) as exc:
        vm.load("timers", [param])
    assert (
        str(exc.value) == f"insmod timers failed: init returned -EINVAL (22) (parameters: {param})"
    )
    assert log in exc.value.details
    assert not vm.exec(f"test -e {DIR} || test -e /sys/module/timers").ok
