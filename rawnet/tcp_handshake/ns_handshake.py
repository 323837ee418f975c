#!/usr/bin/env python3
"""A handshake by hand from a namespace in the guest, where a kernel watches.

    python3 ns_handshake.py DEST PORT

Sends a SYN with scapy, takes the SYN/ACK, sends the ACK. The sender's own
kernel sees the SYN/ACK too: it knows no socket for it and answers with an
RST before scapy's ACK leaves, so the listener never sees a connection.
A firewall rule in the sender's namespace that drops outgoing RSTs
(iptables -A OUTPUT -p tcp --tcp-flags RST RST -j DROP) lets the
handshake complete. Prints "syn-ack" and "ack sent", or "no answer".
"""

from __future__ import annotations

import random
import sys

from scapy.layers.inet import IP, TCP
from scapy.sendrecv import send, sr1


def main() -> int:
    dest, port = sys.argv[1], int(sys.argv[2])
    sport, seq = random.randint(20000, 60000), random.getrandbits(31)
    syn = IP(dst=dest) / TCP(sport=sport, dport=port, flags="S", seq=seq)
    reply = sr1(syn, timeout=5, verbose=0)
    if reply is None or reply[TCP].flags != "SA":
        print("no answer")
        return 1
    print("syn-ack", flush=True)
    ack = TCP(sport=sport, dport=port, flags="A", seq=seq + 1, ack=reply[TCP].seq + 1)
    send(IP(dst=dest) / ack, verbose=0)
    print("ack sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
