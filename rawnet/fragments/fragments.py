#!/usr/bin/env python3
"""IPv4 fragments made by hand, sent to the guest over kdk's wire with scapy.

    python rawnet/fragments/fragments.py [PORT]      # default 6000

Cuts one UDP datagram (header with its checksum, then the data) into IP
fragments itself: every fragment but the last has More Fragments set,
and each carries its offset in units of 8 bytes. Sends the datagram three
ways: in order, out of order, and with two fragments that overlap with
different bytes. Run a UDP receiver in the guest first, e.g.
`kdk exec -- busybox nc -u -l -p 6000`, and see what its socket gets.
"""

from __future__ import annotations

import random
import sys
import time

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from kdk.api import Kdk
from kdk.net.wire import Wire


def udp_datagram(w: Wire, payload: bytes, dport: int, sport: int = 4000) -> bytes:
    """The UDP header and data, checksum computed over the pseudo-header."""
    return bytes(IP(src=w.host_ip, dst=w.guest_ip) / UDP(sport=sport, dport=dport) / payload)[20:]


def fragments(w: Wire, datagram: bytes, size: int, ident: int) -> list[Ether]:
    """The datagram cut into fragments of `size` bytes (a multiple of 8)."""
    assert size % 8 == 0, "offsets count 8-byte units: all but the last fragment are multiples of 8"
    out = []
    for start in range(0, len(datagram), size):
        more = start + size < len(datagram)
        ip = IP(dst=w.guest_ip, id=ident, proto=17, flags="MF" if more else 0, frag=start // 8)
        out.append(Ether() / ip / Raw(datagram[start : start + size]))
    return out


def overlapping(w: Wire, datagram: bytes, ident: int) -> list[Ether]:
    """In-order fragments of 16 bytes plus one more, covering bytes 8..23,
    with other contents: which bytes would a receiver keep?"""
    frags = fragments(w, datagram, 16, ident)
    other = bytes(b ^ 0xFF for b in datagram[8:24])
    extra = Ether() / IP(dst=w.guest_ip, id=ident, proto=17, flags="MF", frag=1) / Raw(other)
    return [frags[0], extra, *frags[1:]]


def main() -> int:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 6000
    with Kdk().wire() as w:
        for how in ("in order", "out of order", "overlapping"):
            data = f"sent {how}: ".encode() + bytes(range(48, 88))
            dgram = udp_datagram(w, data, port)
            ident = random.getrandbits(16)
            frags = (
                overlapping(w, dgram, ident)
                if how == "overlapping"
                else fragments(w, dgram, 16, ident)
            )
            if how == "out of order":
                frags.reverse()
            for f in frags:
                w.send(f)
            print(f"{how}: {len(frags)} fragments of datagram {ident:#06x}, {len(data)} bytes")
            time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
