"""hello in the guest: its lines on load and unload, and its parameter."""

from __future__ import annotations

from kdk.api import Kdk
from kdk.kernel import Kernel
from kdk.modules.info import modinfo


def test_load_and_unload_twice_print_their_lines(vm: Kdk) -> None:
    vm.exec("rmmod hello 2>/dev/null; true")
    for _ in range(2):
        assert vm.load("hello").log[-1].text == "hello: hello, world"
        assert [r.text for r in vm.unload("hello").log] == ["hello: goodbye, world"]


def test_greeting_parameter_is_used_and_visible_read_only(vm: Kdk) -> None:
    res = vm.load("hello", ["greeting=bonjour"])
    assert res.log[-1].text == "hello: bonjour, world"
    param = "/sys/module/hello/parameters/greeting"
    assert vm.exec(["cat", param]).stdout == b"bonjour\n"
    assert vm.exec(["stat", "-c", "%a", param]).stdout == b"444\n"
    vm.unload("hello")


def test_a_greeting_with_a_space_is_one_value(vm: Kdk) -> None:
    """As a shell passes it, one word: the kernel gets it quoted."""
    res = vm.load("hello", ["greeting=good day"])
    assert res.log[-1].text == "hello: good day, world"
    assert not [r.text for r in res.log if "unknown parameter" in r.text]
    vm.unload("hello")


def test_runs_on_the_session_kernel_built_for_it(vm: Kdk, kdk_kernel: Kernel) -> None:
    """What a kernel matrix rests on: the guest runs the kernel the session
    asked for ($KDK_KERNEL), and the module loaded is built for it."""
    assert vm.exec(["uname", "-r"]).stdout.decode().strip() == kdk_kernel.release
    ko = vm.load("hello").ko
    assert ko is not None
    assert modinfo(ko)["vermagic"].split()[0] == kdk_kernel.release
    vm.unload("hello")
