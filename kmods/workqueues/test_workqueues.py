"""workqueues in the guest: items queued through debugfs all get done, the
file reads the counts, bad writes queue nothing, and rmmod right after
queueing waits until every queued item has run."""

from __future__ import annotations

import errno
import re
from collections.abc import Sequence

import pytest

from kdk import testing
from kdk.api import Kdk
from kdk.errors import LoadFailed
from kdk.testing import log_mark, log_since, sh

pytestmark = pytest.mark.module("workqueues")

QUEUE = "/sys/kernel/debug/kdk_workqueues/queue"


def counts(line: str) -> tuple[int, int]:
    """(queued, done) from what the queue file reads."""
    m = re.fullmatch(r"queued (\d+) done (\d+)\n", line)
    assert m, line
    return int(m.group(1)), int(m.group(2))


def queue_and_wait(vm: Kdk, n: int, timeout: float = 30.0) -> str:
    """Queue n items and poll until all queued items are done; what the
    queue file reads then. (cat reads the line in one read(2): the file
    makes it afresh for every read, so byte-wise reads could mix counts.)"""
    return testing.wait_until(
        vm,
        f"set -- $(cat {QUEUE}) && [ $2 = $4 ]",
        timeout,
        first=f"echo {n} > {QUEUE}",
        show=f"cat {QUEUE}",
    )


def check_writes(vm: Kdk, cases: Sequence[tuple[bytes, int]]) -> None:
    """Each (data, expected) is one write to QUEUE: bytes written or -errno."""
    testing.check_writes(vm, [(QUEUE, data, want) for data, want in cases])


def test_load_and_unload_twice_cleanly(vm: Kdk) -> None:
    for _ in range(2):
        assert vm.load("workqueues").log[-1].text == "workqueues: ready, work_ms=10"
        assert sh(vm, f"cat {QUEUE}") == "queued 0 done 0\n"  # counts start afresh
        assert queue_and_wait(vm, 3) == "queued 3 done 3\n"
        assert [r.text for r in vm.unload("workqueues").log] == ["workqueues: exit queued=3 done=3"]
        assert not vm.exec("test -e /sys/kernel/debug/kdk_workqueues").ok


@pytest.mark.parametrize("work_ms", [10, 0])
def test_queued_work_gets_done(vm: Kdk, work_ms: int) -> None:
    res = vm.load("workqueues", [f"work_ms={work_ms}"])
    assert res.log[-1].text == f"workqueues: ready, work_ms={work_ms}"
    assert sh(vm, f"stat -c %a {QUEUE}") == "600\n"
    assert queue_and_wait(vm, 100) == "queued 100 done 100\n"
    assert queue_and_wait(vm, 1000) == "queued 1100 done 1100\n"
    assert queue_and_wait(vm, 1) == "queued 1101 done 1101\n"
    assert [r.text for r in vm.unload("workqueues").log] == [
        "workqueues: exit queued=1101 done=1101"
    ]


def test_bad_writes_are_refused_and_queue_nothing(vm: Kdk) -> None:
    vm.load("workqueues")
    check_writes(
        vm,
        [
            (b"0\n", -errno.EINVAL),
            (b"1001\n", -errno.EINVAL),
            (b"-1\n", -errno.EINVAL),
            (b"abc\n", -errno.EINVAL),
            (b"10abc\n", -errno.EINVAL),
            (b"0x10\n", -errno.EINVAL),
            (b"\n", -errno.EINVAL),
            (b"4294967296\n", -errno.ERANGE),
            (b"99999999999", -errno.ERANGE),
        ],
    )
    assert sh(vm, f"cat {QUEUE}") == "queued 0 done 0\n"
    res = vm.exec(f"echo 1001 > {QUEUE}")
    assert not res.ok
    assert res.stderr
    check_writes(vm, [(b"1000", 4), (b"2\n", 2)])  # the bounds: 1000, and no newline needed
    queued, _ = counts(sh(vm, f"cat {QUEUE}"))
    assert queued == 1002


def test_unload_right_after_queueing_waits_for_every_item(vm: Kdk) -> None:
    seq = log_mark(vm)
    vm.load("workqueues", ["work_ms=200"])
    # no process runs between the write and the read: none of the items,
    # which each sleep 200 ms, can be done yet when rmmod starts
    out = sh(vm, f'echo 1000 > {QUEUE} && read line < {QUEUE} && echo "$line" && rmmod workqueues')
    queued, done = counts(out)
    assert queued == 1000
    assert done < queued
    log = [r.text for r in log_since(vm, seq)]
    assert log[-2:] == ["workqueues: ready, work_ms=200", "workqueues: exit queued=1000 done=1000"]
    assert not vm.exec("test -e /sys/module/workqueues").ok


def test_an_out_of_range_work_ms_fails_the_load(vm: Kdk) -> None:
    with pytest.raises(LoadFailed) as exc:
        vm.load("workqueues", ["work_ms=2000"])
    assert str(exc.value) == (
        "insmod workqueues failed: init returned -EINVAL (22) (parameters: work_ms=2000)"
    )
    assert "workqueues: work_ms=2000 out of range 0..1000" in exc.value.details
    assert not vm.exec("test -e /sys/module/workqueues").ok
    assert vm.load("workqueues", ["work_ms=1000"]).log[-1].text == "workqueues: ready, work_ms=1000"
