"""procfs in the guest: /proc/kdk_procfs/items lists what the commands
written to /proc/kdk_procfs/ctl add, delete and clear, and ctl refuses bad
commands with the documented errno, changing nothing."""

from __future__ import annotations

import errno
from collections.abc import Sequence

import pytest

from kdk import testing
from kdk.api import Kdk
from kdk.testing import sh

pytestmark = pytest.mark.module("procfs")

DIR = "/proc/kdk_procfs"
ITEMS = f"{DIR}/items"
CTL = f"{DIR}/ctl"


def ctl(vm: Kdk, *commands: str) -> str:
    """Write each command to ctl (the way echo does, with a newline) and
    return the items afterwards."""
    writes = "".join(f"echo '{c}' > {CTL} && " for c in commands)
    return sh(vm, f"{writes}cat {ITEMS}")


def check_writes(vm: Kdk, cases: Sequence[tuple[bytes, int]]) -> None:
    """Each (data, expected) is one write to CTL: bytes written or -errno."""
    testing.check_writes(vm, [(CTL, data, want) for data, want in cases])


def test_load_and_unload_twice_cleanly(vm: Kdk) -> None:
    for _ in range(2):
        assert vm.load("procfs").log[-1].text == "procfs: created /proc/kdk_procfs"
        # an item left in the list is freed at unload
        assert ctl(vm, "add leftover") == "leftover\n"
        assert [r.text for r in vm.unload("procfs").log] == ["procfs: removed /proc/kdk_procfs"]
        assert not vm.exec(f"test -e {DIR}").ok


def test_entries_have_their_modes_and_the_list_starts_empty(vm: Kdk) -> None:
    vm.load("procfs")
    modes = sh(vm, f"stat -c '%n %a %F' {DIR} {ITEMS} {CTL}")
    assert modes.splitlines() == [
        f"{DIR} 555 directory",
        f"{ITEMS} 444 regular empty file",
        f"{CTL} 200 regular empty file",
    ]
    assert sh(vm, f"wc -c < {ITEMS}") == "0\n"


def test_add_del_and_clear_show_in_the_list(vm: Kdk) -> None:
    vm.load("procfs")
    assert ctl(vm, "add apple", "add banana") == "apple\nbanana\n"
    # duplicates are kept, in order
    assert ctl(vm, "add apple", "add cherry") == "apple\nbanana\napple\ncherry\n"
    # del removes the oldest equal item
    assert ctl(vm, "del apple") == "banana\napple\ncherry\n"
    assert ctl(vm, "del cherry") == "banana\napple\n"
    assert ctl(vm, "clear") == ""
    assert ctl(vm, "clear") == ""  # also on an empty list
    assert ctl(vm, "add again") == "again\n"


def test_whitespace_around_and_between_is_ignored(vm: Kdk) -> None:
    vm.load("procfs")
    word = "w" * 32  # the longest word
    check_writes(
        vm,
        [
            (b"  add \t kiwi \t\n", 15),
            (b"add\tlime", 8),
            (f"add {word}".encode(), 36),
            (b"add" + b" " * 29 + b"x" * 32, 64),  # the longest write
            (b"del\t\tlime\n", 10),
            (b"clear \n", 7),
            (b"add last", 8),
        ],
    )
    assert sh(vm, f"cat {ITEMS}") == "last\n"


def test_bad_commands_are_refused_and_change_nothing(vm: Kdk) -> None:
    vm.load("procfs")
    assert ctl(vm, "add apple", "add pear") == "apple\npear\n"
    check_writes(
        vm,
        [
            (b"", -errno.EINVAL),
            (b"\n", -errno.EINVAL),
            (b"bogus\n", -errno.EINVAL),
            (b"bogus word\n", -errno.EINVAL),
            (b"add\n", -errno.EINVAL),
            (b"add   \n", -errno.EINVAL),
            (b"del\n", -errno.EINVAL),
            (b"add a b\n", -errno.EINVAL),
            (b"del apple pear\n", -errno.EINVAL),
            (b"add " + b"x" * 33, -errno.EINVAL),
            (b"clear apple\n", -errno.EINVAL),
            (b"add ap\0ple", -errno.EINVAL),
            (b"del apple\0", -errno.EINVAL),
            (b"ADD apple", -errno.EINVAL),
            (b"add " + b"x" * 61, -errno.E2BIG),  # 65 bytes
            (b"clear" + b" " * 60, -errno.E2BIG),
            (b"del banana\n", -errno.ENOENT),
            (b"del appl\n", -errno.ENOENT),
        ],
    )
    assert sh(vm, f"cat {ITEMS}") == "apple\npear\n"
    res = vm.exec(f"echo bogus > {CTL}")
    assert not res.ok
    assert res.stderr


def test_a_full_list_refuses_more_and_lists_every_item(vm: Kdk) -> None:
    vm.load("procfs")
    # 1024 items: the listing is longer than a page, so seq_file goes
    # through start/stop more than once
    sh(vm, f'i=0; while [ $i -lt 1024 ]; do echo "add w$i" > {CTL} || exit 1; i=$((i+1)); done')
    check_writes(
        vm,
        [
            (b"add one-too-many", -errno.ENOSPC),
            (b"del w0", 6),
            (b"add w1024", 9),
            (b"add w1025", -errno.ENOSPC),
        ],
    )
    assert sh(vm, f"cat {ITEMS}").splitlines() == [f"w{i}" for i in range(1, 1025)]
    assert ctl(vm, "clear") == ""
