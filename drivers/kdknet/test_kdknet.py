"""kdknet in the guest: the pair's ends in two network namespaces, ping
through it, scapy-built frames on AF_PACKET, and its counters (ip -s,
sysfs, ethtool -S) checked exactly; the carrier; kdk trace on its xmit."""

from __future__ import annotations

import errno
import json
from dataclasses import dataclass
from typing import Any

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from kdk.api import Kdk
from kdk.errors import LoadFailed
from kdk.net.topology import Namespace, Topology
from kdk.testing import sh

pytestmark = pytest.mark.module("kdknet")

MAC = ["02:6b:64:6e:00:00", "02:6b:64:6e:00:01"]
IPS = ["10.77.0.1", "10.77.0.2"]
PORT = 7000
STATS = ["tx_packets", "tx_bytes", "tx_dropped", "rx_packets", "rx_bytes", "rx_dropped"]

# argv: NS_A NS_B FRAMES_HEX [bypass]. In NS_B, a UDP socket on PORT and an
# AF_PACKET socket on kdknet1; then from NS_A each frame goes out of
# kdknet0 on AF_PACKET (with PACKET_QDISC_BYPASS if asked: straight to the
# driver). Prints what each send(2) returned (bytes or -errno) and what
# kdknet1 and the UDP socket received, as JSON.
FRAMES = f"""
import ctypes, json, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)

def enter(ns):
    fd = os.open("/var/run/netns/" + ns, os.O_RDONLY)
    assert libc.setns(fd, 0x40000000) == 0, os.strerror(ctypes.get_errno())
    os.close(fd)

ns_a, ns_b, frames = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
bypass = len(sys.argv) > 4
enter(ns_b)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("{IPS[1]}", {PORT}))
rx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL
rx.bind(("kdknet1", 0))
enter(ns_a)
tx = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
tx.bind(("kdknet0", 0))
if bypass:
    tx.setsockopt(263, 20, 1)  # SOL_PACKET, PACKET_QDISC_BYPASS
sent = []
for f in frames:
    try:
        sent.append(tx.send(bytes.fromhex(f)))
    except OSError as e:
        sent.append(-e.errno)
# Every frame sent is one datagram for udp: each socket waits (a second
# at most for each) until as many came as were sent, then takes whatever
# else is there already (the test's counters check the exact counts).
n = sum(s >= 0 for s in sent)
got, datagrams = [], []
for sock, out in ((rx, got), (udp, datagrams)):
    sock.settimeout(1)
    try:
        while len(out) < n:
            out.append(sock.recv(65536).hex())
        sock.setblocking(False)
        while True:
            out.append(sock.recv(65536).hex())
    except OSError:  # none left, a timeout, or ENETDOWN: kdknet1 is down
        pass
print(json.dumps({{"sent": sent, "frames": got, "datagrams": datagrams}}))
"""


@dataclass(frozen=True)
class Pair:
    """kdknet0 in namespace a at IPS[0], kdknet1 in namespace b at IPS[1]."""

    a: Namespace
    b: Namespace


@pytest.fixture
def pair(loaded: Kdk, net: Topology) -> Pair:
    """Two namespaces without IPv6 (no solicitations), an end of the pair
    in each, addressed, up, with the other end's MAC as a permanent
    neighbour (no ARP): the only frames on the pair are a test's own. They
    are removed after the test (the ends go back to the root namespace)."""
    p = Pair(net.netns("kdknet-a", ipv6=False), net.netns("kdknet-b", ipv6=False))
    for ns, dev, i in ((p.a, "kdknet0", 0), (p.b, "kdknet1", 1)):
        ns.take(dev)
        ns.addr(dev, f"{IPS[i]}/24")
        ns.neighbour(IPS[1 - i], MAC[1 - i], dev)
        ns.up(dev)
    return p


def counters(ns: Namespace, dev: str) -> dict[str, dict[str, int]]:
    """The interface's counters from three sources: "ip" is the net agent's
    netlink read of IFLA_STATS64 (what `ip -s link` shows), "sysfs" its
    statistics/ files, "ethtool" the driver's own (`ethtool -S`)."""
    stats = ns.links()[dev]["stats"]
    sysfs = ns.check(["grep", ".", *(f"/sys/class/net/{dev}/statistics/{k}" for k in STATS)])
    ethtool = ns.check(["ethtool", "-S", dev])
    return {
        "ip": {k: stats[k] for k in STATS},
        "sysfs": {k.rsplit("/", 1)[1]: int(v) for k, v in (ln.split(":") for ln in sysfs.split())},
        "ethtool": {
            k.strip(): int(v)
            for k, v in (ln.split(":") for ln in ethtool.splitlines()[1:])
            if k.strip() != "napi_polls"
        },
    }


def expect(tx: tuple[int, int, int], rx: tuple[int, int, int]) -> dict[str, dict[str, int]]:
    """What counters() gives for (packets, bytes, dropped) each way."""
    return {src: dict(zip(STATS, tx + rx, strict=True)) for src in ("ip", "sysfs", "ethtool")}


def test_load_and_unload_twice(vm: Kdk) -> None:
    for _ in range(2):
        assert vm.load("kdknet").log[-1].text == "kdknet: 1 pairs: kdknet0..kdknet1"
        links = json.loads(sh(vm, "ip -j link show | cat"))
        ours = {ln["ifname"]: ln["address"] for ln in links if ln["ifname"].startswith("kdknet")}
        assert ours == {"kdknet0": MAC[0], "kdknet1": MAC[1]}
        info = sh(vm, "ethtool -i kdknet0")
        assert "driver: kdknet\n" in info
        assert "bus-info: virtual\n" in info
        assert vm.unload("kdknet").log[-1].text == "kdknet: unloaded"
        assert not vm.exec("ip link show kdknet0").ok
    assert vm.load("kdknet", ["pairs=3"]).log[-1].text == "kdknet: 3 pairs: kdknet0..kdknet5"
    assert sh(vm, "ls /sys/class/net | grep kdknet").split() == [f"kdknet{i}" for i in range(6)]
    with pytest.raises(LoadFailed) as exc:
        vm.load("kdknet", ["pairs=9"])
    assert (
        str(exc.value) == "insmod kdknet failed: init returned -EINVAL (22) (parameters: pairs=9)"
    )
    assert exc.value.details.endswith("kdknet: pairs=9 out of range 1..8")


def test_carrier_is_on_while_both_ends_are_up(loaded: Kdk) -> None:
    # (carrier cannot be read while an interface is down: EINVAL)
    sh(loaded, "ip link set kdknet0 up")
    assert sh(loaded, "cat /sys/class/net/kdknet0/carrier /sys/class/net/kdknet0/operstate") == (
        "0\ndown\n"
    )
    sh(loaded, "ip link set kdknet1 up")
    assert sh(loaded, "cat /sys/class/net/kdknet0/carrier /sys/class/net/kdknet1/carrier") == (
        "1\n1\n"
    )
    sh(loaded, "ip link set kdknet1 down")
    assert sh(loaded, "cat /sys/class/net/kdknet0/carrier") == "0\n"


def test_ping_between_two_namespaces(pair: Pair, loaded: Kdk) -> None:
    out = pair.a.check(["busybox", "ping", "-c", "3", "-i", "0.2", "-w", "20", IPS[1]], 40)
    assert "3 packets transmitted, 3 packets received, 0% packet loss" in out
    snmp = pair.b.check(["cat", "/proc/net/snmp"])
    icmp = [ln.split() for ln in snmp.splitlines() if ln.startswith("Icmp:")]
    icmp_b = dict(zip(icmp[0][1:], map(int, icmp[1][1:]), strict=True))
    assert (icmp_b["InEchos"], icmp_b["OutEchoReps"]) == (3, 3)
    frame = 14 + 20 + 8 + 56  # Ethernet, IPv4, ICMP headers, 56 bytes of data
    assert counters(pair.a, "kdknet0") == expect((3, 3 * frame, 0), (3, 3 * frame, 0))
    assert counters(pair.b, "kdknet1") == expect((3, 3 * frame, 0), (3, 3 * frame, 0))


def udp_frames(n: int) -> list[bytes]:
    """n frames of different sizes from kdknet0 to a UDP socket behind kdknet1."""
    return [
        bytes(
            Ether(src=MAC[0], dst=MAC[1])
            / IP(src=IPS[0], dst=IPS[1])
            / UDP(sport=40000 + i, dport=PORT)
            / (b"kdknet-%03d-" % i + b"x" * (i * 37))
        )
        for i in range(n)
    ]


def send_frames(
    vm: Kdk, pair: Pair, frames: list[bytes], bypass: bool = False
) -> dict[str, list[Any]]:
    argv = ["python3", "-c", FRAMES, str(pair.a.name), str(pair.b.name)]
    argv.append(",".join(f.hex() for f in frames))
    return json.loads(sh(vm, argv + (["bypass"] if bypass else [])))  # type: ignore[no-any-return]


def test_af_packet_frames_arrive_whole_and_are_counted(pair: Pair, loaded: Kdk) -> None:
    frames = udp_frames(7)
    got = send_frames(loaded, pair, frames)
    assert got["sent"] == [len(f) for f in frames]
    assert [bytes.fromhex(f) for f in got["frames"]] == frames  # byte for byte, in order
    assert [bytes.fromhex(d) for d in got["datagrams"]] == [
        bytes(f[UDP].payload) for f in map(Ether, frames)
    ]
    size = sum(map(len, frames))
    assert counters(pair.a, "kdknet0") == expect((7, size, 0), (0, 0, 0))
    assert counters(pair.b, "kdknet1") == expect((0, 0, 0), (7, size, 0))
    # The far end down: the carrier goes off, and the kernel drops frames
    # for a device without carrier before the driver sees them, even those
    # that bypass the queueing discipline: send(2) fails with ENOBUFS, the
    # core counts them in the interface's tx_dropped (ip -s, sysfs), the
    # driver's own ethtool counter stays 0.
    pair.b.down("kdknet1")
    assert pair.a.check(["cat", "/sys/class/net/kdknet0/carrier"]) == "0\n"
    got = send_frames(loaded, pair, frames[:4], bypass=True)
    assert got["sent"] == [-errno.ENOBUFS] * 4
    assert got["frames"] == got["datagrams"] == []
    want = expect((7, size, 4), (0, 0, 0))
    want["ethtool"]["tx_dropped"] = 0
    assert counters(pair.a, "kdknet0") == want


def test_trace_counts_the_xmit_calls(pair: Pair, loaded: Kdk) -> None:
    frames = udp_frames(5)
    with loaded.trace("kdknet") as t:
        got = send_frames(loaded, pair, frames)
        result = t.snapshot(final=True)
    assert len(got["frames"]) == 5
    calls = {f.name: f.calls for f in result.functions}
    assert calls["kdknet_xmit"] == 5
    assert calls["kdknet_poll"] >= 1  # NAPI may take several frames per poll
