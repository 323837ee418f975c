"""The arp lab: a scanner that finds exactly the hosts of a bridge, and ARP
with the guest's own kernel over the wire."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.net.wire import Wire
from kdk.testing.net import Lan
from rawnet.arp import wire_arp

SCANNER = str(Path(__file__).resolve().parent / "arp_scan.py")
TARGETS = 4


def test_the_scanner_finds_exactly_the_hosts_on_the_bridge(
    netns_bridge: Callable[..., Lan],
) -> None:
    lan = netns_bridge(TARGETS + 1)
    scanner, targets = lan.hosts[0], lan.hosts[1:]
    out = scanner.check(["python3", SCANNER, "-W", "1", "eth0", "10.11.0.0/24"], timeout=60)
    *lines, total = out.splitlines()
    found = dict(line.split() for line in lines)
    assert found == {ip: t.mac("eth0") for ip, t in zip(lan.ips[1:], targets, strict=True)}
    assert total == f"{TARGETS} hosts"
    # each target's kernel learned the scanner from its request
    me = scanner.mac("eth0")
    for t in targets:
        assert f"lladdr {me}" in t.check(["ip", "neigh", "show", lan.ips[0]])


def test_over_the_wire_only_the_guest_answers(wire: Wire) -> None:
    assert wire_arp.scan(wire) == {wire.guest_ip: wire.guest_mac}


@pytest.fixture
def arp_accept(vm: Kdk) -> Iterator[Callable[[int], None]]:
    """Set the guest's arp_accept on its wire interface; reset afterwards."""

    def set_to(value: int) -> None:
        vm.exec(f"sysctl -qw net.ipv4.conf.eth1.arp_accept={value}")

    yield set_to
    set_to(0)
    vm.exec("ip neigh flush dev eth1 to 10.9.0.7; true")


def test_an_unsolicited_is_at_is_taken_only_with_arp_accept(
    vm: Kdk, wire: Wire, arp_accept: Callable[[int], None]
) -> None:
    def neigh() -> str:
        return vm.exec("ip neigh show 10.9.0.7 dev eth1").stdout.decode().strip()

    mac = "02:00:00:00:00:07"
    arp_accept(0)
    wire_arp.announce(wire, "10.9.0.7", mac)
    assert neigh() == ""  # the default: a reply nobody asked for creates nothing
    arp_accept(1)
    wire_arp.announce(wire, "10.9.0.7", mac)
    assert f"lladdr {mac}" in neigh()
