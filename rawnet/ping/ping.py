#!/usr/bin/env python3
"""An ICMP echo client over a raw socket, checksum computed by hand.

    python3 ping.py [-c COUNT] [-s SIZE] [-W SECONDS] [--corrupt] DEST

The Python twin of ping.c (same options, same output): it builds each echo
request itself, sends it on a SOCK_RAW socket of protocol ICMP (the kernel
adds the IP header), and keeps the echo replies carrying its identifier
among the whole IP packets the socket receives. `--corrupt` sends a wrong
checksum, which the receiving kernel counts (InCsumErrors) and ignores.
Standard library only; needs CAP_NET_RAW (root in the guest).
"""

from __future__ import annotations

import argparse
import os
import select
import socket
import struct
import sys
import time

ECHO_REQUEST, ECHO_REPLY = 8, 0


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071): one's complement of the one's
    complement sum of the big-endian 16-bit words (odd data: a zero pad)."""
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def echo_request(ident: int, seq: int, size: int, corrupt: bool = False) -> bytes:
    """An ICMP echo request with `size` bytes of data and its checksum."""
    payload = bytes((j + seq) & 0xFF for j in range(size))
    header = struct.pack("!BBHHH", ECHO_REQUEST, 0, 0, ident, seq)
    csum = checksum(header + payload) ^ (0xFFFF if corrupt else 0)
    return struct.pack("!BBHHH", ECHO_REQUEST, 0, csum, ident, seq) + payload


def wait_reply(sock: socket.socket, ident: int, seq: int, timeout: float) -> tuple[str, int] | None:
    """(sender, data bytes) of the echo reply to (ident, seq) within `timeout`."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([sock], [], [], left)[0]:
            return None
        packet, (sender, _) = sock.recvfrom(65535)
        icmp = packet[(packet[0] & 0x0F) * 4 :]  # after the IP header (IHL words)
        if len(icmp) < 8:
            continue
        kind, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
        if kind != ECHO_REPLY or (rid, rseq) != (ident, seq):
            continue
        if checksum(icmp) != 0:
            print(f"ping: reply {seq} with a bad checksum", file=sys.stderr)
            continue
        return sender, len(icmp) - 8
    return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest")
    ap.add_argument("-c", type=int, default=1, dest="count")
    ap.add_argument("-s", type=int, default=56, dest="size")
    ap.add_argument("-W", type=float, default=2.0, dest="timeout")
    ap.add_argument("--corrupt", action="store_true", help="send a wrong checksum")
    a = ap.parse_args()
    ident = os.getpid() & 0xFFFF
    received = 0
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
        for seq in range(1, a.count + 1):
            sent = time.monotonic()
            sock.sendto(echo_request(ident, seq, a.size, a.corrupt), (a.dest, 0))
            reply = wait_reply(sock, ident, seq, a.timeout)
            if reply is None:
                print(f"no reply: seq={seq}")
                continue
            received += 1
            ms = (time.monotonic() - sent) * 1e3
            print(f"reply from {reply[0]}: seq={seq} id={ident} bytes={reply[1]} time={ms:.2f} ms")
    print(f"{a.count} sent, {received} received")
    return 0 if received == a.count else 1


if __name__ == "__main__":
    sys.exit(main())
