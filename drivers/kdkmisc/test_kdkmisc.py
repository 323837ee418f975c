"""kdkmisc in the guest: its command protocol, errors, and the misc node."""

from __future__ import annotations

import errno
import os

import pytest

from kdk.api import Kdk

pytestmark = pytest.mark.module("kdkmisc")

DEV = "/dev/kdkmisc"


def test_loads_twice_with_a_misc_node(vm: Kdk) -> None:
    for _ in range(2):
        assert vm.load("kdkmisc").log[-1].text.startswith("kdkmisc: registered /dev/kdkmisc")
        node = vm.exec(["stat", "-c", "%F %t", DEV]).stdout.decode().split()
        assert node[:3] == ["character", "special", "file"] and int(node[3], 16) == 10
        assert vm.unload("kdkmisc").log[-1].text == "kdkmisc: unloaded"
        assert not vm.exec(["test", "-e", DEV]).ok


def test_commands_and_answers(loaded: Kdk) -> None:
    with loaded.open_device(DEV, os.O_RDWR) as dev:
        for command, answer in [
            (b"upper Hello, World\n", b"HELLO, WORLD\n"),
            (b"lower MiXeD", b"mixed\n"),
            (b"rev abc def", b"fed cba\n"),
            (b"len twelve chars", b"12\n"),
            (b"len", b"0\n"),
        ]:
            assert dev.write(command) == len(command)
            assert dev.read(300) == answer
            assert dev.read(300) == b""  # each answer is read once


def test_the_answer_is_shared_through_the_shell(loaded: Kdk) -> None:
    r = loaded.exec(f"echo 'rev kdk rocks' > {DEV} && cat {DEV}")
    assert r.ok and r.stdout == b"skcor kdk\n"


def test_bad_commands_keep_the_previous_answer(loaded: Kdk) -> None:
    with loaded.open_device(DEV, os.O_RDWR) as dev:
        dev.write(b"upper ok")
        for bad, code in [
            (b"shout hi", errno.EINVAL),
            (b"upper two\nlines\n", errno.EINVAL),
            (b"upper nul\0byte", errno.EINVAL),
            (b"upper " + b"x" * 300, errno.E2BIG),
        ]:
            with pytest.raises(OSError) as err:
                dev.write(bad)
            assert err.value.errno == code, bad
        with pytest.raises(OSError) as err:
            dev.write_from_bad_pointer(8)
        assert err.value.errno == errno.EFAULT
        assert dev.read(100) == b"OK\n"
