"""params in the guest: int, bool, charp, array and a validated parameter,
set at insmod time, shown in /sys/module/params/parameters, changed there
when writable, and bad values refused in both places."""

from __future__ import annotations

import errno
import re
from collections.abc import Sequence

import pytest

from kdk import testing
from kdk.api import Kdk
from kdk.errors import LoadFailed
from kdk.testing import log_mark, log_since, sh

pytestmark = pytest.mark.module("params")

PARAMS = "/sys/module/params/parameters"


def read_params(vm: Kdk) -> dict[str, str]:
    """Every parameter file's exact content ('' for an empty file)."""
    out = sh(vm, f'cd {PARAMS} && for f in *; do echo "== $f"; cat $f; done')
    parts = re.split(r"^== (\w+)\n", out, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def check_writes(vm: Kdk, cases: Sequence[tuple[str, bytes, int]]) -> None:
    """Each (file in PARAMS, data, expected) is one write: bytes written or -errno."""
    testing.check_writes(vm, [(f"{PARAMS}/{f}", data, want) for f, data, want in cases])


def test_load_and_unload_twice_cleanly(vm: Kdk) -> None:
    for _ in range(2):
        res = vm.load("params")
        assert [r.text for r in res.log][-2:] == [
            "params: count=1 verbose=N name=kdk level=5",
            "params: nr_values=0 values=",
        ]
        assert [r.text for r in vm.unload("params").log] == [
            "params: exit count=1 verbose=N level=5"
        ]
        assert not vm.exec("test -e /sys/module/params").ok


def test_defaults_are_visible_in_sysfs_with_their_modes(vm: Kdk) -> None:
    vm.load("params")
    # values is empty, without even a newline
    assert read_params(vm) == {
        "count": "1\n",
        "verbose": "N\n",
        "name": "kdk\n",
        "values": "",
        "level": "5\n",
    }
    modes = sh(vm, f"cd {PARAMS} && stat -c '%n %a' count verbose name values level")
    assert modes.splitlines() == ["count 644", "verbose 644", "name 444", "values 444", "level 644"]


def test_values_given_at_insmod_are_used_and_visible(vm: Kdk) -> None:
    res = vm.load("params", ["count=3", "verbose=1", "name=hello", "values=1,-2,3", "level=7"])
    assert [r.text for r in res.log][-3:] == [
        "params: level set to 7",
        "params: count=3 verbose=Y name=hello level=7",
        "params: nr_values=3 values=1,-2,3",
    ]
    assert read_params(vm) == {
        "count": "3\n",
        "verbose": "Y\n",
        "name": "hello\n",
        "values": "1,-2,3\n",
        "level": "7\n",
    }


def test_int_takes_hex_and_octal_and_bool_its_other_spellings(vm: Kdk) -> None:
    res = vm.load("params", ["count=0x10", "verbose=on", "values=010,8"])
    assert [r.text for r in res.log][-2:] == [
        "params: count=16 verbose=Y name=kdk level=5",
        "params: nr_values=2 values=8,8",
    ]
    vm.load("params", ["verbose=n"])
    assert sh(vm, f"cat {PARAMS}/verbose") == "N\n"


def test_eight_values_are_accepted(vm: Kdk) -> None:
    res = vm.load("params", ["values=1,2,3,4,5,6,7,8"])
    assert res.log[-1].text == "params: nr_values=8 values=1,2,3,4,5,6,7,8"
    assert sh(vm, f"cat {PARAMS}/values") == "1,2,3,4,5,6,7,8\n"


def test_writable_parameters_change_at_run_time(vm: Kdk) -> None:
    vm.load("params")
    seq = log_mark(vm)
    sh(vm, f"cd {PARAMS} && echo 42 > count && echo Y > verbose && echo 10 > level")
    assert sh(vm, f"cd {PARAMS} && cat count verbose level") == "42\nY\n10\n"
    assert [r.text for r in log_since(vm, seq)] == ["params: level set to 10"]
    sh(vm, f"cd {PARAMS} && echo -5 > count && echo 0 > level")
    assert sh(vm, f"cd {PARAMS} && cat count level") == "-5\n0\n"
    # the exit line shows the run-time values
    assert [r.text for r in vm.unload("params").log] == ["params: exit count=-5 verbose=Y level=0"]


def test_a_bad_sysfs_write_is_refused_and_keeps_the_value(vm: Kdk) -> None:
    vm.load("params", ["count=3", "values=1,2", "level=7"])
    check_writes(
        vm,
        [
            ("count", b"abc\n", -errno.EINVAL),
            ("count", b"12abc", -errno.EINVAL),
            ("verbose", b"maybe\n", -errno.EINVAL),
            ("verbose", b"2", -errno.EINVAL),
            ("level", b"11\n", -errno.EINVAL),
            ("level", b"-1\n", -errno.EINVAL),
            ("level", b"abc\n", -errno.EINVAL),
            ("level", b"99999999999\n", -errno.ERANGE),
            ("name", b"other\n", -errno.EACCES),
            ("values", b"4,5\n", -errno.EACCES),
        ],
    )
    assert read_params(vm) == {
        "count": "3\n",
        "verbose": "N\n",
        "name": "kdk\n",
        "values": "1,2\n",
        "level": "7\n",
    }
    # the shell sees the refusal too, and a good value is still taken
    res = vm.exec(f"echo 11 > {PARAMS}/level")
    assert not res.ok
    assert res.stderr
    sh(vm, f"echo 10 > {PARAMS}/level")
    assert sh(vm, f"cat {PARAMS}/level") == "10\n"


@pytest.mark.parametrize(
    ("param", "log"),
    [
        ("count=abc", "params: `abc' invalid for parameter `count'"),
        ("level=11", "params: `11' invalid for parameter `level'"),
        ("level=-1", "params: `-1' invalid for parameter `level'"),
        ("level=abc", "params: `abc' invalid for parameter `level'"),
        ("verbose=maybe", "params: `maybe' invalid for parameter `verbose'"),
        ("values=1,2,3,4,5,6,7,8,9", "values: can only take 8 arguments"),
    ],
)
def test_a_bad_value_at_insmod_fails_the_load(vm: Kdk, param: str, log: str) -> None:
    with pytest.raises(LoadFailed) as exc:
        vm.load("params", [param])
    # the kernel refused the value before init ran: its line is the reason
    assert str(exc.value) == f"insmod params failed: -EINVAL (22): {log}"
    assert log in exc.value.details
    assert "params: count=" not in exc.value.details  # init never ran
    assert not vm.exec("test -e /sys/module/params").ok


def test_an_unknown_parameter_is_ignored(vm: Kdk) -> None:
    res = vm.load("params", ["foo=1", "count=2"])
    texts = [r.text for r in res.log]
    assert "params: unknown parameter 'foo' ignored" in texts
    assert texts[-2] == "params: count=2 verbose=N name=kdk level=5"
    assert not vm.exec(f"test -e {PARAMS}/foo").ok
