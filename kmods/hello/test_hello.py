"""hello in the guest: its lines on load and unload, and its parameter."""

from __future__ import annotations

from kdk.api import Kdk


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
