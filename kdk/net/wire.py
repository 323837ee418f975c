"""The host end of the wire: raw Ethernet frames to and from the guest.

    with Kdk().wire() as w:              # a scapy SuperSocket
        reply = w.sr1(Ether(dst=w.guest_mac) / IP(dst=w.guest_ip) / ICMP(), timeout=5)

Frames are datagrams on a unix socket (see kdk.vm.link): sending one puts
it on the guest's eth1, receiving one takes the next frame the guest sent.
scapy's `send`, `sr`, `sr1` and `sniff` work on it like on any interface.
The host end behaves as a host at `host_ip`: an ARP who-has for it is
answered as the frame is received (and still handed to the reader, so a
sniffer sees the guest's ARP requests). Only one process owns the host end
at a time (a lock holding the owner's pid); a second gets WireBusy naming
the owner. With `pcap`, every frame both ways is also written to a pcap
file (Ethernet link type) that tcpdump and Wireshark read.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import MissingDependency, VMNotRunning, WireBusy
from ..vm.link import GUEST_SOCKET, HOST_SOCKET, LOCK, WIRE, held_by, wire_dir

try:
    from scapy.layers.inet import IP
    from scapy.layers.l2 import ARP, Ether
    from scapy.supersocket import SuperSocket
except ImportError as e:  # depends on the installation
    raise MissingDependency(
        "the wire needs scapy: pip install 'scapy>=2.5,<2.6' (Debian: python3-scapy)"
    ) from e

FRAME_MAX = 65536


def _ip4(text: str) -> bytes:
    return socket.inet_aton(text)


def _mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


class Wire(SuperSocket):  # type: ignore[misc]  # scapy has no type information
    """The host end of the wire of the VM whose state folder is `state`."""

    desc = "kdk wire: Ethernet frames to and from the guest's eth1"

    def __init__(self, state: Path, pcap: Path | None = None) -> None:
        self.guest_if = WIRE.guest_if
        self.guest_ip = WIRE.guest_ip
        self.guest_mac = WIRE.guest_mac
        self.host_ip = WIRE.host_ip
        self.host_mac = WIRE.host_mac
        self.pcap = pcap
        self.closed = True  # until everything below is set up (close() is safe)
        folder = wire_dir(state)
        if not (folder / GUEST_SOCKET).exists():
            raise VMNotRunning(
                f"no wire at {folder}: the VM is not up, or was booted "
                "without one (by another backend, or an older kdk)"
            )
        self._guest = str(folder / GUEST_SOCKET)
        self._lock_fd = _take_lock(folder / LOCK)
        self._host = folder / HOST_SOCKET
        self._host.unlink(missing_ok=True)  # a dead owner's
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sock.bind(str(self._host))
        except OSError:
            sock.close()
            os.close(self._lock_fd)  # the next owner may try
            raise
        self.ins = self.outs = sock
        self.iface = f"kdk-wire:{folder}"
        self.promisc = False
        self._arp_reply_to = _mac(self.host_mac) + _ip4(self.host_ip)
        self._pcap = None if pcap is None else pcap.open("wb")
        self._pcap_lock = threading.Lock()  # scapy's sr() sends from a thread of its own
        if self._pcap is not None:
            # pcap global header: magic, version 2.4, UTC, snaplen, LINKTYPE_ETHERNET
            self._pcap.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, FRAME_MAX, 1))
        self.closed = False

    # -- scapy's SuperSocket interface --------------------------------------
    def send(self, x: Any) -> int:
        """Put one frame (a scapy packet or bytes) on the guest's interface.

        Addresses a packet leaves unset are the wire's, never looked up on
        the host's own network: Ether src is host_mac, dst guest_mac (an ARP
        request: broadcast); IP src and ARP psrc/hwsrc are the host end's."""
        if isinstance(x, Ether):
            self._complete(x)
            x.sent_time = time.time()
        data = bytes(x)
        self._record(data)
        try:
            return self.outs.sendto(data, self._guest)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise VMNotRunning(
                f"the wire's guest end is gone ({e.strerror}): is the VM up?"
            ) from None

    def sr(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """scapy's sr() on the wire, with the wire's addresses filled in
        first (scapy matches answers on them)."""
        return super().sr(self._complete_all(x), *args, **kwargs)

    def sr1(self, x: Any, *args: Any, **kwargs: Any) -> Any:
        """scapy's sr1() on the wire (see sr)."""
        return super().sr1(self._complete_all(x), *args, **kwargs)

    def recv_raw(self, x: int = FRAME_MAX) -> tuple[type[Ether], bytes, float]:
        """The next frame the guest sent, as scapy's readers want it."""
        data = self.ins.recv(FRAME_MAX)
        stamp = time.time()
        self._record(data, stamp)
        self._answer_arp(data)
        return Ether, data, stamp

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.ins.close()
        self._host.unlink(missing_ok=True)
        if self._pcap is not None:
            self._pcap.close()
        os.close(self._lock_fd)

    # -- the host end as a host --------------------------------------------
    def _answer_arp(self, frame: bytes) -> None:
        """Answer an ARP who-has for host_ip with host_mac (RFC 826 is-at)."""
        if len(frame) < 42 or frame[12:14] != b"\x08\x06" or frame[20:22] != b"\x00\x01":
            return
        if frame[38:42] != self._arp_reply_to[6:]:
            return
        asker = frame[22:32]  # sender MAC and IP
        reply = (
            asker[:6]
            + self._arp_reply_to[:6]
            + b"\x08\x06"
            + b"\x00\x01\x08\x00\x06\x04\x00\x02"
            + self._arp_reply_to
            + asker
        )
        self.send(reply)

    def _complete_all(self, x: Any) -> Any:
        for frame in x if isinstance(x, list) else [x]:
            if isinstance(frame, Ether):
                self._complete(frame)
        return x

    def _complete(self, frame: Any) -> None:
        """Fill in the addresses `frame` leaves unset (see send)."""
        arp = frame.getlayer(ARP)
        if "src" not in frame.fields:
            frame.src = self.host_mac
        if "dst" not in frame.fields:
            who_has = arp is not None and arp.op == 1
            frame.dst = "ff:ff:ff:ff:ff:ff" if who_has else self.guest_mac
        ip = frame.getlayer(IP)
        if ip is not None and "src" not in ip.fields:
            ip.src = self.host_ip
        if arp is not None:
            if "hwsrc" not in arp.fields:
                arp.hwsrc = self.host_mac
            if "psrc" not in arp.fields:
                arp.psrc = self.host_ip

    def _record(self, frame: bytes, stamp: float | None = None) -> None:
        if self._pcap is None:
            return
        stamp = time.time() if stamp is None else stamp
        usec = int(stamp % 1 * 1e6)
        with self._pcap_lock:
            self._pcap.write(struct.pack("<IIII", int(stamp), usec, len(frame), len(frame)))
            self._pcap.write(frame)
            self._pcap.flush()

    # -- plain frames, without scapy's machinery (fast) ----------------------
    def record(self, duration: float | None = None) -> int:
        """Take every frame the guest sends (recording them, with pcap) for
        `duration` seconds or until Ctrl-C; how many there were."""
        deadline = None if duration is None else time.monotonic() + duration
        n = 0
        try:
            while deadline is None or time.monotonic() < deadline:
                left = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                n += self.receive(max(left, 0.0)) is not None
        except KeyboardInterrupt:
            pass
        return n

    def exchange(self, frame: bytes, timeout: float = 2.0) -> bytes | None:
        """Send `frame` and return the next frame the guest sends within
        `timeout` seconds (None if none)."""
        self.send(frame)
        return self.receive(timeout)

    def receive(self, timeout: float = 2.0) -> bytes | None:
        """The next frame from the guest within `timeout` seconds, or None."""
        self.ins.settimeout(timeout)
        try:
            return self.recv_raw()[1]
        except (TimeoutError, BlockingIOError):
            return None
        finally:
            self.ins.settimeout(None)

    def drain(self) -> int:
        """Drop the frames waiting to be read; how many there were."""
        n = 0
        while self.receive(0.0) is not None:
            n += 1
        return n


def _take_lock(lock: Path) -> int:
    """Hold the wire's lock (its file then holds our pid) or raise WireBusy."""
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
            raise
        raise WireBusy(f"the wire is owned by {held_by(lock)}; one owner at a time") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd
