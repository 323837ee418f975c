#!/usr/bin/env python3
"""CAN frames with scapy on SocketCAN: send on one controller, see what
another receives.

    python3 can_frames.py SEND_IFACE RECV_IFACE [--filter ID/MASK...] ID#DATA...

Opens a CAN_RAW socket on RECV_IFACE (with the CAN_RAW_FILTER the
--filter options make: a frame passes when id & MASK == ID & MASK, for any
of them; none: every frame), sends each frame (ID in hex, DATA 0-8 bytes
in hex, as cansend writes them: 123#deadbeef) on SEND_IFACE, and prints,
as JSON, every frame that socket received. It waits until every frame sent
has crossed the bus (a second socket on RECV_IFACE, with no filter, has
seen it; a second at most for each), then a tenth of a second more for
the filtered socket, which the kernel serves in the same pass.
"""

from __future__ import annotations

import argparse
import json
import select
import sys

from scapy.contrib.cansocket_native import NativeCANSocket
from scapy.layers.can import CAN

QUIET = 1.0  # seconds without a frame crossing that end the waiting
GRACE = 0.1  # seconds the filtered socket may take after the last crossing


def frame(text: str) -> CAN:
    ident, data = text.split("#")
    raw = bytes.fromhex(data)
    return CAN(identifier=int(ident, 16), length=len(raw), data=raw)


def mask(text: str) -> dict[str, int]:
    ident, m = text.split("/")
    return {"can_id": int(ident, 16), "can_mask": int(m, 16)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("send")
    p.add_argument("recv")
    p.add_argument("frames", nargs="+", metavar="ID#DATA")
    p.add_argument("--filter", action="append", type=mask, metavar="ID/MASK")
    a = p.parse_args()
    rx = NativeCANSocket(channel=a.recv, can_filters=a.filter)
    crossed = NativeCANSocket(channel=a.recv)
    tx = NativeCANSocket(channel=a.send)
    for f in a.frames:
        tx.send(frame(f))
    for _ in a.frames:
        if not select.select([crossed], [], [], QUIET)[0]:
            break
        crossed.recv()
    got = []
    while select.select([rx], [], [], GRACE)[0]:
        pkt = rx.recv()
        got.append({"id": pkt.identifier, "dlc": pkt.length, "data": bytes(pkt.data).hex()})
    for sock in (tx, crossed, rx):
        sock.close()
    json.dump(got, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
