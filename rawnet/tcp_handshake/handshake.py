#!/usr/bin/env python3
"""TCP by hand: handshake, data and FIN, with scapy over kdk's wire.

    python rawnet/tcp_handshake/handshake.py [PORT]    # default 22: sshd's banner

Every segment is built here: the SYN, the ACK of the SYN/ACK, the data,
the ACKs of what the guest sends, and the FIN. The guest's kernel is the
other end, with a real listening socket. The host end of the wire has no
TCP stack of its own, so nothing here answers the guest's segments behind
our back (see README: the RST a sender's own kernel sends).
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from kdk.api import Kdk
from kdk.net.wire import Wire


class HandshakeFailed(Exception):
    pass


class Connection:
    """One TCP connection to the guest, every segment made by hand."""

    def __init__(self, w: Wire, dport: int, sport: int | None = None) -> None:
        self.w = w
        self.dport = dport
        self.sport = sport or random.randint(20000, 60000)
        self.seq = random.getrandbits(32)  # our next sequence number
        self.ack = 0  # the next byte we expect from the guest
        self.peer_closed = False  # the guest's FIN came
        self.acked = False  # the guest acknowledged everything we sent
        self.log: list[str] = []  # one line per segment, both ways

    def segment(self, flags: str, data: bytes = b"") -> Ether:
        tcp = TCP(
            sport=self.sport,
            dport=self.dport,
            flags=flags,
            seq=self.seq,
            ack=self.ack if "A" in flags else 0,
            window=65535,
        )
        return Ether() / IP(dst=self.w.guest_ip) / tcp / data

    def _send(self, flags: str, data: bytes = b"") -> None:
        self.log.append(f"> {flags:<3} seq={self.seq} ack={self.ack} len={len(data)}")
        self.w.send(self.segment(flags, data))

    def _next(self, timeout: float) -> TCP | None:
        """The guest's next segment of this connection within `timeout` s."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            frame = self.w.receive(left)
            if frame is None:
                return None
            tcp = Ether(frame).getlayer(TCP)
            if tcp is not None and (tcp.sport, tcp.dport) == (self.dport, self.sport):
                self.log.append(
                    f"< {tcp.flags!s:<3} seq={tcp.seq} ack={tcp.ack} len={len(tcp.payload)}"
                )
                return tcp
        return None

    def open(self, timeout: float = 5.0) -> None:
        """SYN, SYN/ACK, ACK."""
        self._send("S")
        reply = self._next(timeout)
        if reply is None or reply.flags != "SA" or reply.ack != (self.seq + 1) % 2**32:
            raise HandshakeFailed(f"port {self.dport}: {reply.flags if reply else 'no'} answer")
        self.seq = reply.ack
        self.ack = (reply.seq + 1) % 2**32
        self._send("A")

    def send(self, data: bytes, timeout: float = 5.0) -> None:
        """Data with PSH, until the guest acknowledged all of it."""
        self._send("PA", data)
        self.seq = (self.seq + len(data)) % 2**32
        self._until(lambda: self.acked, timeout)

    def receive(self, timeout: float = 5.0) -> bytes:
        """What the guest sends within `timeout` s (acknowledged), up to its FIN."""
        got = b""
        deadline = time.monotonic() + timeout
        while not self.peer_closed and (seg := self._next(deadline - time.monotonic())):
            got += self._take(seg)
        return got

    def close(self, timeout: float = 5.0) -> bytes:
        """FIN; then wait for the guest's ACK of it and its own FIN (data
        before that FIN is returned), and acknowledge the FIN."""
        self._send("FA")
        self.seq = (self.seq + 1) % 2**32
        return self._until(lambda: self.acked and self.peer_closed, timeout)

    def _take(self, seg: TCP) -> bytes:
        """Account for one segment from the guest; its new data."""
        self.acked = "A" in seg.flags and seg.ack == self.seq
        data = bytes(seg.payload) if seg.seq == self.ack else b""  # in order only
        self.ack = (self.ack + len(data)) % 2**32
        if "F" in seg.flags and seg.seq + len(data) == self.ack:
            self.ack = (self.ack + 1) % 2**32
            self.peer_closed = True
        if data or "F" in seg.flags:
            self._send("A")
        if "R" in seg.flags:
            raise HandshakeFailed("the guest reset the connection")
        return data

    def _until(self, done: Callable[[], bool], timeout: float) -> bytes:
        """Take the guest's segments until `done()`; the data they carried."""
        got = b""
        deadline = time.monotonic() + timeout
        while not done():
            seg = self._next(deadline - time.monotonic())
            if seg is None:
                raise HandshakeFailed(f"no answer from the guest in {timeout:g} s")
            got += self._take(seg)
        return got


def probe(w: Wire, port: int, timeout: float = 5.0) -> str:
    """The flags the guest answers a lone SYN to `port` with ("SA" open, "RA" closed)."""
    conn = Connection(w, port)
    conn._send("S")
    reply = conn._next(timeout)
    if reply is not None and "S" in reply.flags:
        conn.seq += 1
        conn._send("R")  # we will not finish this one
    return str(reply.flags) if reply is not None else ""


def main() -> int:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 22
    with Kdk().wire() as w:
        conn = Connection(w, port)
        try:
            conn.open()
            banner = conn.receive(timeout=3)
            tail = conn.close()
        except HandshakeFailed as e:
            print("\n".join(conn.log))
            print(f"handshake: {e}", file=sys.stderr)
            return 1
    print("\n".join(conn.log))
    print(f"received: {banner + tail!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
