"""The fragments lab: what the guest kernel's reassembly delivers to a UDP
socket, and what its counters say, for fragments sent by hand."""

from __future__ import annotations

import itertools
import random
import signal
from collections.abc import Iterator

import pytest

from kdk.net.topology import Namespace, Process, Topology
from kdk.net.wire import Wire
from rawnet.fragments.fragments import fragments, overlapping, udp_datagram
from rawnet.lab import counters

PORT = 6000
# On SIGTERM the receiver reports what its socket holds still: the echo
# reply of delivered() says the kernel queued every datagram, not that
# this process (slow to be scheduled under TCG) has read them yet. The
# signal only sets a flag: raised as an exception, it once ended the
# receiver between a recv() and its print, and that datagram was lost.
RECEIVER = f"""
import select, signal, socket
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", {PORT}))
print("ready", flush=True)
while True:
    if select.select([s], [], [], 0.05)[0]:
        print("got", s.recv(65535).hex(), flush=True)
    elif stopping:
        break
"""
DATA = bytes(range(100))  # 108 bytes with the UDP header: 7 fragments of 16


@pytest.fixture
def receiver(net: Topology) -> Iterator[tuple[Namespace, Process]]:
    guest = net.guest()  # the guest's own namespace: eth1 is there
    proc = guest.spawn(["python3", "-c", RECEIVER])
    proc.wait_for("ready")
    yield guest, proc


def settled(wire: Wire) -> None:
    """Once an echo reply came back, the guest has handled every frame sent before it."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import Ether

    assert wire.sr1(Ether() / IP(dst=wire.guest_ip) / ICMP(), timeout=10, verbose=0)


def delivered(wire: Wire, proc: Process) -> list[bytes]:
    """What the receiver's socket got (every frame sent before handled)."""
    settled(wire)
    out = proc.finish(timeout=5, signal=signal.SIGTERM).stdout.decode().split()
    return [bytes.fromhex(h) for word, h in itertools.pairwise(out) if word == "got"]


def reassembly(ns: Namespace) -> dict[str, int]:
    ip = counters(ns, "Ip")
    return {
        "reqds": ip["ReasmReqds"],
        "oks": ip["ReasmOKs"],
        "fails": ip["ReasmFails"],
        "overlaps": counters(ns, "IpExt", "netstat")["ReasmOverlaps"],
    }


def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before[k] for k in after}


@pytest.mark.parametrize("order", ["in order", "reversed", "shuffled"])
def test_fragments_in_any_order_make_one_datagram(
    wire: Wire, receiver: tuple[Namespace, Process], order: str
) -> None:
    guest, proc = receiver
    frags = fragments(wire, udp_datagram(wire, DATA, PORT), 16, ident=0x1001)
    if order == "reversed":
        frags.reverse()
    elif order == "shuffled":
        random.Random(5).shuffle(frags)
    before = reassembly(guest)
    for f in frags:
        wire.send(f)
    assert delivered(wire, proc) == [DATA]
    assert diff(reassembly(guest), before) == {"reqds": 7, "oks": 1, "fails": 0, "overlaps": 0}


def test_a_duplicate_fragment_is_ignored(wire: Wire, receiver: tuple[Namespace, Process]) -> None:
    guest, proc = receiver
    frags = fragments(wire, udp_datagram(wire, DATA, PORT), 16, ident=0x1002)
    before = reassembly(guest)
    for f in [*frags[:3], frags[1], *frags[3:]]:
        wire.send(f)
    assert delivered(wire, proc) == [DATA]
    assert diff(reassembly(guest), before)["oks"] == 1


def test_overlapping_fragments_drop_the_whole_datagram(
    wire: Wire, receiver: tuple[Namespace, Process]
) -> None:
    guest, proc = receiver
    frags = overlapping(wire, udp_datagram(wire, DATA, PORT), ident=0x1003)
    before = reassembly(guest)
    for f in frags:
        wire.send(f)
    # Linux keeps neither copy: an overlap discards the datagram (RFC 5722's
    # rule for IPv6, applied to IPv4 since the FragmentSmack fixes)
    assert delivered(wire, proc) == []
    assert diff(reassembly(guest), before) == {"reqds": 8, "oks": 0, "fails": 1, "overlaps": 1}
    # The fragments after the overlap started the datagram anew: a queue
    # without its first fragment, which would fail when the reassembly
    # timeout (30 s) ends it, in whatever runs then. The overlapping piece
    # once more overlaps that queue, and drops it now.
    wire.send(frags[1])
    settled(wire)
    assert diff(reassembly(guest), before) == {"reqds": 9, "oks": 0, "fails": 2, "overlaps": 2}
