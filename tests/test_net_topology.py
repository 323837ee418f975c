"""Namespaces, veth pairs and bridges in a real guest, built by the net agent."""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest

from kdk.api import Kdk
from kdk.errors import MissingDependency, NetError
from kdk.guest.programs import PACKAGES
from kdk.net.topology import PREFIX, Namespace, NetAgent, Topology
from kdk.testing.net import AgentKeeper, Lan, Pair

pytestmark = pytest.mark.vm


def netns_names(vm: Kdk) -> list[str]:
    out = vm.exec("ls /run/netns 2>/dev/null; true").stdout.decode()
    return [n for n in out.split() if n.startswith(PREFIX)]


def test_a_pair_pings_and_the_counters_say_so(netns_pair: Pair) -> None:
    a, b = netns_pair.a, netns_pair.b
    before = b.links()["veth0"]["stats"]["rx_packets"]
    a.check(["busybox", "ping", "-c", "3", "-W", "5", netns_pair.b_ip])
    after = b.links()["veth0"]["stats"]["rx_packets"]
    assert after - before >= 3  # 3 echo requests (and maybe an ARP request)
    snmp = b.check(["cat", "/proc/net/snmp"]).split("\n")
    icmp = dict(zip(*(ln.split()[1:] for ln in snmp if ln.startswith("Icmp:")), strict=True))
    assert int(icmp["InEchos"]) == 3 and int(icmp["OutEchoReps"]) == 3


def test_a_missing_program_is_named_with_its_package(
    net: Topology, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(PACKAGES, "kdk-no-such-program", "kdk-example")  # looked up on the host
    ns = net.netns("m")
    said = "kdk-no-such-program is not installed on the host (the guest runs the host's programs)"
    with pytest.raises(
        MissingDependency, match=f"^{re.escape(said)}: apt-get install kdk-example$"
    ):
        ns.run(["kdk-no-such-program", "-x"])
    with pytest.raises(MissingDependency, match=f"^{re.escape(said)}"):
        ns.spawn(["kdk-no-such-program"])
    assert ns.check(["cat", "/proc/self/comm"]) == "cat\n"  # the agent goes on


def test_namespaces_and_their_processes_go_when_the_test_ends(
    vm: Kdk, net_agent: AgentKeeper
) -> None:
    with Topology(net_agent.get(vm)) as t:
        ns = t.netns("x")
        sleeper = ns.spawn(["sh", "-c", "echo up; exec sleep 600"])
        sleeper.wait_for("up")
        assert ns.name in netns_names(vm)
        # a process that is not the agent's own child, in the namespace too
        ns.check(["sh", "-c", "sleep 600 >/dev/null 2>&1 &"])
    assert ns.name not in netns_names(vm)
    left = vm.exec("ps -o args= -e | grep -c '^sleep 600' ; true").stdout.decode()
    assert left.strip() == "0"


def test_a_failing_step_is_one_line_naming_it(net: Topology) -> None:
    ns = net.netns("y")
    with pytest.raises(NetError, match=r"addr: .*no interface nosuch"):
        ns.addr("nosuch", "10.1.1.1/24")


def test_the_agent_imports_only_what_it_uses_of_pyroute2(vm: Kdk, net_agent: AgentKeeper) -> None:
    """Past the package's __init__ (the seconds of the first topology after
    boot), and still a working IPRoute: the tests around build with it."""
    assert net_agent.get(vm).call("hello")["pyroute2"] == "IPRoute"


def test_sessions_are_processes_of_their_own_with_one_import(
    vm: Kdk, net_agent: AgentKeeper
) -> None:
    first, second = net_agent.get(vm), NetAgent(vm.guest())
    try:
        assert first.pid != second.pid
        assert (first.start_seconds, first.import_seconds) == (
            second.start_seconds,
            second.import_seconds,
        )
    finally:
        second.close()
    assert first.call("hello")["pid"] == first.pid  # one session's end is not another's


def test_leftovers_of_a_killed_run_are_removed_once(vm: Kdk, net_agent: AgentKeeper) -> None:
    agent = net_agent.get(vm)
    agent.call("netns", name=f"{PREFIX}killed-run")
    # a name bound to the guest's own namespace: unmounted, its processes spared
    vm.exec(f"touch /run/netns/{PREFIX}root && mount --bind /proc/1/ns/net /run/netns/{PREFIX}root")
    assert agent.clean() == [f"{PREFIX}killed-run", f"{PREFIX}root"]
    assert agent.clean() == []
    assert vm.exec("true").ok  # sshd (in the guest's own namespace) still runs


def test_n_namespaces_on_a_bridge_reach_each_other(netns_bridge: Callable[..., Lan]) -> None:
    lan = netns_bridge(3)
    assert len(lan.hosts) == 3
    lan.hosts[0].check(["busybox", "ping", "-c", "1", "-W", "5", lan.ips[2]])
    ports = lan.switch.links()
    assert {f"p{i}" for i in range(3)} <= set(ports)


def test_a_spawned_server_is_ready_before_the_client_runs(netns_pair: Pair) -> None:
    code = (
        "import socket\ns = socket.socket(); s.bind(('0.0.0.0', 7000)); s.listen()\n"
        "print('listening', flush=True)\nc, _ = s.accept(); print(c.recv(100).decode())"
    )
    server = netns_pair.b.spawn(["python3", "-c", code])
    server.wait_for("listening")
    netns_pair.a.check(
        [
            "python3",
            "-c",
            f"import socket\nsocket.create_connection(('{netns_pair.b_ip}', 7000)).sendall(b'hi')",
        ]
    )
    done = server.finish(timeout=10)
    assert done.ok and done.stdout.decode().split() == ["listening", "hi"]


def test_programs_end_with_the_agent_whatever_the_host_did(vm: Kdk) -> None:
    agent = NetAgent(vm.guest())
    Namespace(agent, None).spawn(["sh", "-c", "exec sleep 555"])
    agent.close()  # as when the host side is killed: the channel just closes
    deadline = time.monotonic() + 20
    while vm.exec("ps -o args= -e | grep -c '^sleep 555'; true").stdout.strip() != b"0":
        assert time.monotonic() < deadline, "sleep 555 outlived its agent"
        time.sleep(0.5)
