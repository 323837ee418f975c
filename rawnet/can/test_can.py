"""The CAN lab: two kvaser_pci controllers on one emulated bus (kdk up
--can 2), brought up with pyroute2, frames sent with scapy on can0 and
received on can1, exactly; CAN_RAW_FILTER; the controllers' counters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kdk.api import Kdk
from kdk.testing import sh
from kdk.vm.devices import can_bus, missing

pytestmark = pytest.mark.devices(can=2)

LAB = Path(__file__).resolve().parent
LINK = str(LAB / "can_link.py")
FRAMES = str(LAB / "can_frames.py")
COUNTERS = ("tx_packets", "tx_bytes", "rx_packets", "rx_bytes")


def links(vm: Kdk, action: str = "show") -> dict[str, Any]:
    return dict(json.loads(sh(vm, ["python3", LINK, action, "can0", "can1"])))


def frames(vm: Kdk, *args: str) -> list[dict[str, Any]]:
    return list(json.loads(sh(vm, ["python3", FRAMES, "can0", "can1", *args])))


def counters(vm: Kdk) -> dict[str, dict[str, int]]:
    """The links' counters (the kernel's link stats, through sysfs: one
    shell command, where pyroute2 would be a Python start)."""
    names = [f"{n} {k}" for n in ("can0", "can1") for k in COUNTERS]
    out = sh(
        vm, " ".join(f"cat /sys/class/net/{n}/statistics/{k};" for n, k in map(str.split, names))
    )
    values = dict(zip(names, map(int, out.split()), strict=True))
    return {n: {k: values[f"{n} {k}"] for k in COUNTERS} for n in ("can0", "can1")}


@pytest.fixture
def can_up(vm: Kdk) -> None:
    """Both controllers up at 500 kbit/s (by can_link.py unless they are)."""
    flags = sh(vm, "cat /sys/class/net/can0/flags /sys/class/net/can1/flags").split()
    if not all(int(f, 16) & 1 for f in flags):  # IFF_UP
        links(vm, "up")


def test_both_controllers_up_at_the_bitrate(vm: Kdk) -> None:
    assert missing(can_bus(2), vm.status()["devices"]) == []  # (the session's may have more)
    for link in links(vm, "up").values():
        assert {k: link[k] for k in ("up", "bitrate", "sample_point", "clock", "state")} == {
            "up": True,
            "bitrate": 500000,
            "sample_point": 875,  # 87.5 %: the kernel's choice for CAN's bitrates up to 800 k
            "clock": 8000000,  # the SJA1000's 16 MHz crystal, halved
            "state": "error-active",
        }


def test_frames_cross_the_bus_exactly_and_the_counters_agree(vm: Kdk, can_up: None) -> None:
    before = counters(vm)
    got = frames(vm, "123#deadbeef", "7ff#", "001#0102030405060708", "456#00")
    assert got == [
        {"id": 0x123, "dlc": 4, "data": "deadbeef"},
        {"id": 0x7FF, "dlc": 0, "data": ""},
        {"id": 0x001, "dlc": 8, "data": "0102030405060708"},
        {"id": 0x456, "dlc": 1, "data": "00"},
    ]
    after = counters(vm)
    delta = {n: {k: after[n][k] - before[n][k] for k in COUNTERS} for n in after}
    assert delta == {
        "can0": {"tx_packets": 4, "tx_bytes": 13, "rx_packets": 0, "rx_bytes": 0},
        "can1": {"tx_packets": 0, "tx_bytes": 0, "rx_packets": 4, "rx_bytes": 13},
    }


def test_raw_filter_passes_exactly_the_matching_ids(vm: Kdk, can_up: None) -> None:
    sent = [f"{i:03x}#{i & 0xFF:02x}" for i in (0x100, 0x123, 0x124, 0x1F3, 0x223, 0x7FF)]
    got = frames(vm, "--filter", "123/7ff", "--filter", "7f0/7f0", *sent)
    assert [f["id"] for f in got] == [0x123, 0x7FF]
    got = frames(vm, "--filter", "023/0ff", *sent)
    assert [f["id"] for f in got] == [0x123, 0x223]
