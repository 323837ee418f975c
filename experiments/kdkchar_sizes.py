#!/usr/bin/env python3
"""Size distribution of the reads and writes on kdkchar, as bcc's tools show it.

    python experiments/kdkchar_sizes.py [-- WORKLOAD...]

Loads kdkchar in the running VM, attaches kdkchar_sizes.c, runs a workload
(by default writes and reads of a few sizes), and prints one log2
histogram per direction.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kdk.api import Kdk
from kdk.errors import script
from kdk.trace.bpf import Probes, histogram_text

HERE = Path(__file__).resolve().parent
DEFAULT = (
    "for n in 1 10 100 1000; do head -c $n /dev/zero > /dev/kdkchar0; done; "
    "dd if=/dev/kdkchar0 of=/dev/null bs=64 count=3 iflag=nonblock 2>/dev/null; true"
)


def size_histograms(k: Kdk, workload: str = DEFAULT) -> dict[str, dict[int, int]]:
    """{"read": {slot: count}, "write": {...}} for the workload's calls."""
    k.load("kdkchar")
    probes = Probes(kprobes={"kdkchar_read": "on_read", "kdkchar_write": "on_write"})
    with k.bpf(HERE / "kdkchar_sizes.c", probes) as prog:
        k.exec(workload)
        rows = prog.tables()["sizes"]
    out: dict[str, dict[int, int]] = {"read": {}, "write": {}}
    for key, count in rows:
        out["write" if key["write"] else "read"][key["slot"]] = count
    return out


def main() -> int:
    workload = " ".join(sys.argv[2:]) if sys.argv[1:2] == ["--"] else DEFAULT
    for direction, hist in size_histograms(Kdk(), workload).items():
        print(f"\n{direction}s of kdkchar:")
        print(histogram_text(hist, "bytes"))
    return 0


if __name__ == "__main__":
    script(main)
