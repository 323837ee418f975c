"""The sniffer lab: a classic BPF filter on an AF_PACKET socket lets
exactly the matching frames through, as the kernel's own statistics say."""

from __future__ import annotations

import signal
from typing import Any

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP
from scapy.layers.l2 import ARP, Ether

from kdk.api import Kdk
from kdk.net.topology import Topology
from kdk.net.wire import Wire
from rawnet.lab import build, counters, require_config

PORT = 5555


def frames(w: Wire) -> tuple[list[Any], list[Any]]:
    """(frames the filter must keep, frames it must drop)."""
    ip = IP(dst=w.guest_ip)
    keep = [Ether() / ip / UDP(sport=1000 + i, dport=PORT) / b"match" for i in range(5)]
    keep.append(
        Ether()
        / IP(dst=w.guest_ip, options=[IPOption_NOP()] * 4)  # a longer IP header
        / UDP(dport=PORT)
        / b"options"
    )
    drop = [
        Ether() / ip / UDP(dport=PORT + 1) / b"other port",
        Ether() / ip / UDP(sport=PORT, dport=7) / b"source port only",
        Ether() / ip / TCP(dport=PORT, flags="S"),
        Ether() / ip / ICMP() / b"ping",
        Ether() / ARP(pdst="10.9.0.200"),
        # a later fragment whose bytes where a UDP header would be say PORT
        Ether() / IP(dst=w.guest_ip, proto=17, frag=10, id=77) / UDP(dport=PORT),
    ]
    return keep, drop


def test_exactly_the_matching_frames_get_through(vm: Kdk, net: Topology, wire: Wire) -> None:
    require_config(vm, "CONFIG_PACKET")
    sniffer = build("sniffer", "sniffer")
    guest = net.guest()  # the guest's own namespace holds eth1
    proc = guest.spawn([sniffer, "-i", wire.guest_if, "-p", str(PORT), "-t", "60"])
    proc.wait_for("ready")
    keep, drop = frames(wire)
    try:
        for f in keep[:3] + drop[:3] + keep[3:] + drop[3:]:  # interleaved
            wire.send(f)
        # a frame the guest's kernel answers: when it comes back, all before it went in
        assert wire.sr1(Ether() / IP(dst=wire.guest_ip) / ICMP(seq=99), timeout=10, verbose=0)
        out = proc.finish(timeout=10, signal=signal.SIGTERM)
        assert out.ok, out.stderr
        lines = out.stdout.decode().splitlines()
        assert lines[-2:] == [f"matched {len(keep)}", f"kernel packets {len(keep)} drops 0"]
    finally:
        # The later fragment opened a reassembly queue in the guest, which
        # would fail when its timeout (30 s) ends it, in whatever test runs
        # then (the fragments lab counts such failures): the datagram's
        # first 80 bytes complete it now.
        before = counters(guest, "Ip")
        wire.send(Ether() / IP(dst=wire.guest_ip, proto=17, id=77, flags="MF") / bytes(80))
        assert wire.sr1(Ether() / IP(dst=wire.guest_ip) / ICMP(seq=100), timeout=10, verbose=0)
        after = counters(guest, "Ip")
    completed, failed = (after[k] - before[k] for k in ("ReasmOKs", "ReasmFails"))
    assert (completed, failed) == (1, 0)  # no queue of this test's is left to fail later
