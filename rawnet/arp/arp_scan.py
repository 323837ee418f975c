#!/usr/bin/env python3
"""An ARP scanner on an AF_PACKET socket: who is on this link?

    python3 arp_scan.py [-W SECONDS] IFACE NETWORK/PREFIX

Sends one ARP who-has (RFC 826) per address of NETWORK from IFACE, its own
MAC and IPv4 address as the sender, then prints each is-at reply as
"IP MAC", sorted, and a count. Standard library only; needs CAP_NET_RAW.
"""

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import select
import socket
import struct
import sys
import time

ETH_P_ARP = 0x0806
SIOCGIFADDR = 0x8915
SIOCGIFHWADDR = 0x8927
BROADCAST = b"\xff" * 6


def own_addresses(ifname: str) -> tuple[bytes, bytes]:
    """The interface's MAC and first IPv4 address, as bytes (asked with
    ioctls: /sys/class/net shows the namespace /sys was mounted in)."""
    ifreq = struct.pack("16s16x", ifname.encode())
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        hw = fcntl.ioctl(s.fileno(), SIOCGIFHWADDR, ifreq)
        inet = fcntl.ioctl(s.fileno(), SIOCGIFADDR, ifreq)
    # struct ifreq: the name (16 bytes), then a sockaddr: family (2 bytes),
    # then the MAC; or, for AF_INET, port (2 bytes) and the address
    return hw[18:24], inet[20:24]


def who_has(mac: bytes, ip: bytes, target: bytes) -> bytes:
    """An Ethernet broadcast frame carrying an ARP request for `target`."""
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, mac, ip, b"\0" * 6, target)
    return BROADCAST + mac + struct.pack("!H", ETH_P_ARP) + arp


def is_at(frame: bytes) -> tuple[str, str] | None:
    """(IP, MAC) of the sender when `frame` is an ARP reply, else None."""
    if len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    op, sha, spa = struct.unpack("!6xH6s4s", frame[14:32])
    if op != 2:
        return None
    return socket.inet_ntoa(spa), sha.hex(":")


def scan(ifname: str, network: str, wait: float = 1.0) -> dict[str, str]:
    """IP -> MAC of every host of `network` that answered within `wait` s
    after the last request."""
    mac, ip = own_addresses(ifname)
    found: dict[str, str] = {}
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP)) as s:
        s.bind((ifname, ETH_P_ARP))
        for host in ipaddress.ip_network(network, strict=False).hosts():
            if host.packed != ip:
                s.send(who_has(mac, ip, host.packed))
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            if select.select([s], [], [], left)[0]:
                reply = is_at(s.recv(65535))
                if reply is not None:
                    found[reply[0]] = reply[1]
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("iface")
    ap.add_argument("network", help="e.g. 10.11.0.0/24")
    ap.add_argument("-W", type=float, default=1.0, dest="wait", help="seconds to wait for replies")
    a = ap.parse_args()
    found = scan(a.iface, a.network, a.wait)
    for ip in sorted(found, key=ipaddress.ip_address):
        print(ip, found[ip])
    print(f"{len(found)} hosts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
