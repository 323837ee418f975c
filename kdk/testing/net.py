"""pytest fixtures for packet labs (exposed by kdk's plugin, kdk.testing).

    def test_ping(netns_pair):             # two namespaces on a veth pair
        out = netns_pair.a.check(["busybox", "ping", "-c1", netns_pair.b_ip])

    def test_scan(netns_bridge):           # N namespaces on a bridge
        lan = netns_bridge(4)

    def test_arp(wire):                    # the wire, recorded to a pcap file
        wire.sr1(Ether() / ARP(pdst=wire.guest_ip), timeout=5)

`net` is an empty Topology for shapes of one's own. Namespaces are removed
after each test, passed or failed. One net agent serves the whole session
(started again if the VM was booted again); namespaces a killed run left
behind are removed when it starts, and said once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from ..api import Kdk
from ..net.topology import Namespace, NetAgent, Topology
from ..ui import say
from .keep import PerBoot

if TYPE_CHECKING:
    from ..net.wire import Wire


def start_agent(vm: Kdk) -> NetAgent:
    """A session of the net agent; namespaces a killed run left are removed, and said."""
    agent = NetAgent(vm.guest())
    left = agent.clean()
    if left:
        say(f"removed {len(left)} network namespaces left by a killed run: " + " ".join(left))
    return agent


AgentKeeper = PerBoot[NetAgent]  # the session's net agent (fixture net_agent)


@pytest.fixture(scope="session")
def net_agent() -> Iterator[AgentKeeper]:
    keeper = PerBoot(start_agent)
    yield keeper
    keeper.close()


@pytest.fixture
def net(vm: Kdk, net_agent: AgentKeeper) -> Iterator[Topology]:
    """An empty topology in the guest; its namespaces are removed afterwards."""
    with Topology(net_agent.get(vm)) as t:
        yield t


@dataclass(frozen=True)
class Pair:
    """Two namespaces joined by a veth pair, `ifname` in each, addressed."""

    a: Namespace
    b: Namespace
    a_ip: str = "10.10.0.1"
    b_ip: str = "10.10.0.2"
    prefix: int = 24
    ifname: str = "veth0"


def build_pair(t: Topology) -> Pair:
    p = Pair(t.netns("a"), t.netns("b"))
    t.veth(p.a, p.ifname, p.b, p.ifname)
    for ns, ip in ((p.a, p.a_ip), (p.b, p.b_ip)):
        ns.addr(p.ifname, f"{ip}/{p.prefix}")
        ns.up(p.ifname)
    return p


@pytest.fixture
def netns_pair(net: Topology) -> Pair:
    """Namespaces a (10.10.0.1/24) and b (10.10.0.2/24) on veth0 of each."""
    return build_pair(net)


@dataclass(frozen=True)
class Lan:
    """Hosts on one bridge; the bridge lives in a namespace of its own."""

    switch: Namespace  # holds br0 and a port per host
    hosts: list[Namespace]
    ips: list[str]  # hosts[i] has ips[i] on its `ifname`
    prefix: int = 24
    ifname: str = "eth0"


def build_lan(t: Topology, n: int, subnet: str = "10.11.0") -> Lan:
    """`n` hosts, host i at <subnet>.<i+1>/24 on its eth0, all on one bridge."""
    switch = t.netns("sw")
    t.bridge(switch, "br0")
    hosts, ips = [], []
    for i in range(n):
        host, ip = t.netns(f"h{i}"), f"{subnet}.{i + 1}"
        t.veth(switch, f"p{i}", host, "eth0")
        switch.up(f"p{i}", master="br0")
        host.addr("eth0", f"{ip}/24")
        host.up("eth0")
        hosts.append(host)
        ips.append(ip)
    return Lan(switch, hosts, ips)


@pytest.fixture
def netns_bridge(net: Topology) -> Callable[..., Lan]:
    """A factory: netns_bridge(n, subnet="10.11.0") makes a Lan of n hosts."""

    def make(n: int, subnet: str = "10.11.0") -> Lan:
        return build_lan(net, n, subnet)

    return make


@pytest.fixture
def wire(vm: Kdk, request: pytest.FixtureRequest) -> Iterator[Wire]:
    """The wire into the guest, every frame recorded to
    <state>/results/<test>.pcap (kept after the test)."""
    results = vm.state / "results"
    results.mkdir(parents=True, exist_ok=True)
    name = request.node.name.replace("/", "_").replace("[", "-").replace("]", "")
    with vm.wire(pcap=results / f"{name}.pcap") as w:
        yield w
