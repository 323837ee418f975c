#!/usr/bin/env python3
"""CAN links through netlink with pyroute2: bitrate, up, and counters.

    python3 can_link.py up [--bitrate BPS] IFACE...   # set the bitrate, then up
    python3 can_link.py show IFACE...                 # JSON: bitrate, state, counters

A CAN controller's bitrate is link data of kind "can" (IFLA_INFO_DATA,
linux/can/netlink.h): IFLA_CAN_BITTIMING, a struct can_bittiming of eight
__u32 whose bitrate alone is given (the kernel computes the rest from the
controller's clock). pyroute2 0.7 knows no "can" kind: the class below
teaches it one. The bitrate can only change while the link is down.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink import nla

IFF_UP = 0x1
CAN_STATES = ["error-active", "error-warning", "error-passive", "bus-off", "stopped", "sleeping"]


class can(nla):  # type: ignore[misc]  # pyroute2 has no types; the kind's name
    """IFLA_INFO_DATA of kind "can", the attributes this lab uses."""

    prefix = "IFLA_"
    nla_map = (
        ("IFLA_CAN_UNSPEC", "none"),
        ("IFLA_CAN_BITTIMING", "can_bittiming"),
        ("IFLA_CAN_BITTIMING_CONST", "hex"),
        ("IFLA_CAN_CLOCK", "uint32"),
        ("IFLA_CAN_STATE", "uint32"),
        ("IFLA_CAN_CTRLMODE", "hex"),
        ("IFLA_CAN_RESTART_MS", "uint32"),
    )

    class can_bittiming(nla):  # type: ignore[misc]  # named in nla_map
        fields = (
            ("bitrate", "I"),
            ("sample_point", "I"),  # in tenths of a percent
            ("tq", "I"),  # time quantum, ns
            ("prop_seg", "I"),
            ("phase_seg1", "I"),
            ("phase_seg2", "I"),
            ("sjw", "I"),
            ("brp", "I"),
        )


def up(ipr: IPRoute, name: str, bitrate: int) -> None:
    (index,) = ipr.link_lookup(ifname=name)
    ipr.link("set", index=index, state="down")
    ipr.link("set", index=index, kind="can", can_bittiming={"bitrate": bitrate})
    ipr.link("set", index=index, state="up")


def show(ipr: IPRoute, name: str) -> dict[str, Any]:
    (index,) = ipr.link_lookup(ifname=name)
    (msg,) = ipr.get_links(index)
    data = msg.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA")
    stats = msg.get_attr("IFLA_STATS64")
    timing = data.get_attr("IFLA_CAN_BITTIMING")
    return {
        "up": bool(msg["flags"] & IFF_UP),
        "bitrate": timing["bitrate"],
        "sample_point": timing["sample_point"],
        "clock": data.get_attr("IFLA_CAN_CLOCK"),
        "state": CAN_STATES[data.get_attr("IFLA_CAN_STATE")],
        **{
            k: stats[k]
            for k in (
                "tx_packets",
                "tx_bytes",
                "rx_packets",
                "rx_bytes",
                "tx_errors",
                "rx_errors",
                "tx_dropped",
                "rx_dropped",
            )
        },
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("action", choices=["up", "show"])
    p.add_argument("ifaces", nargs="+", metavar="IFACE")
    p.add_argument("--bitrate", type=int, default=500000, help="bits/s (default 500000)")
    a = p.parse_args()
    with IPRoute() as ipr:
        ipr.register_link_kind(module={"can": can})
        if a.action == "up":
            for name in a.ifaces:
                up(ipr, name, a.bitrate)
        json.dump({name: show(ipr, name) for name in a.ifaces}, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
