#!/usr/bin/env python3
"""ARP over kdk's wire, from the host, with scapy.

    python rawnet/arp/wire_arp.py [NETWORK]     # who answers on the wire's link

The wire is a link with two ends: the host end (this program, at
10.9.0.1) and the guest's eth1 (10.9.0.2). A who-has for every address of
NETWORK (default 10.9.0.0/28) is answered by exactly one host: the guest.
`announce()` sends an unsolicited is-at, which the guest's kernel takes or
ignores depending on its arp_accept setting.
"""

from __future__ import annotations

import sys

from scapy.layers.l2 import ARP, Ether

from kdk.api import Kdk
from kdk.net.wire import Wire


def scan(w: Wire, network: str = "10.9.0.0/28", timeout: float = 2.0) -> dict[str, str]:
    """IP -> MAC of every address of `network` that answered a who-has."""
    answered, _ = w.sr(Ether() / ARP(pdst=network), timeout=timeout, verbose=0)
    return {str(r[ARP].psrc): str(r[ARP].hwsrc) for _, r in answered}


def announce(w: Wire, ip: str, mac: str) -> None:
    """An unsolicited ARP reply, broadcast: "`ip` is at `mac`"."""
    w.send(Ether(dst="ff:ff:ff:ff:ff:ff", src=mac) / ARP(op=2, psrc=ip, hwsrc=mac, pdst=ip))


def main() -> int:
    network = sys.argv[1] if len(sys.argv) > 1 else "10.9.0.0/28"
    with Kdk().wire() as w:
        found = scan(w, network)
    for ip, mac in sorted(found.items()):
        print(ip, mac)
    print(f"{len(found)} hosts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
