"""sysfs in the guest: /sys/kernel/kdk_sysfs/{value,name,writes}, the
values written and read back, bad writes refused with EINVAL, and
`writes` counting only the accepted ones."""

from __future__ import annotations

import errno
from collections.abc import Sequence

import pytest

from kdk import testing
from kdk.api import Kdk
from kdk.testing import sh

pytestmark = pytest.mark.module("sysfs")

DIR = "/sys/kernel/kdk_sysfs"

# poll() on value: nothing pending after a read, POLLPRI|POLLERR after a
# write to value (sysfs_notify), nothing after a write to name.
POLL = f"""
import os, select
f = open({DIR!r} + "/value", "rb", buffering=0)
f.read()
p = select.poll()
p.register(f, select.POLLPRI | select.POLLERR)
print(p.poll(0) == [])
fd = os.open({DIR!r} + "/name", os.O_WRONLY); os.write(fd, b"x"); os.close(fd)
print(p.poll(0) == [])
fd = os.open({DIR!r} + "/value", os.O_WRONLY); os.write(fd, b"7"); os.close(fd)
ev = p.poll(5000)
print(len(ev) == 1 and ev[0][1] & select.POLLPRI != 0)
f.seek(0)
print(f.read() == b"7\\n")
"""


def state(vm: Kdk) -> str:
    """value, name and writes, one per line."""
    return sh(vm, f"cd {DIR} && cat value name writes")


def check_writes(vm: Kdk, cases: Sequence[tuple[str, bytes, int]]) -> None:
    """Each (file in DIR, data, expected) is one write: bytes written or -errno."""
    testing.check_writes(vm, [(f"{DIR}/{f}", data, want) for f, data, want in cases])


def test_load_and_unload_twice_cleanly(vm: Kdk) -> None:
    for _ in range(2):
        assert vm.load("sysfs").log[-1].text == "sysfs: created /sys/kernel/kdk_sysfs"
        # the state starts afresh on every load
        assert state(vm) == "0\nkdk\n0\n"
        sh(vm, f"echo 5 > {DIR}/value")
        assert [r.text for r in vm.unload("sysfs").log] == ["sysfs: removed /sys/kernel/kdk_sysfs"]
        assert not vm.exec(f"test -e {DIR}").ok


def test_attributes_have_their_modes_and_initial_values(vm: Kdk) -> None:
    vm.load("sysfs")
    modes = sh(vm, f"cd {DIR} && stat -c '%n %a' value name writes")
    assert modes.splitlines() == ["value 644", "name 644", "writes 444"]
    assert state(vm) == "0\nkdk\n0\n"


def test_written_values_are_read_back_and_counted(vm: Kdk) -> None:
    vm.load("sysfs")
    sh(vm, f"cd {DIR} && echo 42 > value && echo 'hello world' > name")
    assert state(vm) == "42\nhello world\n2\n"
    # bounds, without a newline, and the same value again: all counted
    sh(vm, f"cd {DIR} && printf 1000 > value && echo 0 > value && echo 0 > value")
    assert state(vm) == "0\nhello world\n5\n"
    longest = "~" * 31
    sh(vm, f"cd {DIR} && printf '{longest}' > name && echo ' x ' > name")
    assert state(vm) == "0\n x \n7\n"
    sh(vm, f"cd {DIR} && echo '{longest}' > name")
    assert state(vm) == f"0\n{longest}\n8\n"


def test_bad_writes_get_einval_keep_the_value_and_are_not_counted(vm: Kdk) -> None:
    vm.load("sysfs")
    sh(vm, f"cd {DIR} && echo 7 > value && echo seven > name")
    check_writes(
        vm,
        [
            ("value", b"1001\n", -errno.EINVAL),
            ("value", b"-1\n", -errno.EINVAL),
            ("value", b"0x10\n", -errno.EINVAL),
            ("value", b"abc\n", -errno.EINVAL),
            ("value", b"12abc", -errno.EINVAL),
            ("value", b"\n", -errno.EINVAL),
            ("value", b"5\n\n", -errno.EINVAL),
            ("value", b" 5", -errno.EINVAL),
            ("value", b"99999999999", -errno.EINVAL),
            ("name", b"\n", -errno.EINVAL),
            ("name", b"x" * 32, -errno.EINVAL),
            ("name", b"x" * 32 + b"\n", -errno.EINVAL),
            ("name", b"a\tb", -errno.EINVAL),
            ("name", b"a\n\n", -errno.EINVAL),
            ("name", b"bell\x07", -errno.EINVAL),
            ("name", b"del\x7f", -errno.EINVAL),
            ("name", "caf\u00e9".encode(), -errno.EINVAL),
            ("writes", b"0\n", -errno.EACCES),
        ],
    )
    assert state(vm) == "7\nseven\n2\n"
    res = vm.exec(f"echo 1001 > {DIR}/value")
    assert not res.ok
    assert res.stderr
    assert state(vm) == "7\nseven\n2\n"


def test_poll_on_value_wakes_up_after_a_write(vm: Kdk) -> None:
    vm.load("sysfs")
    assert sh(vm, ["python3", "-c", POLL]) == "True\nTrue\nTrue\nTrue\n"
    assert state(vm) == "7\nx\n2\n"
