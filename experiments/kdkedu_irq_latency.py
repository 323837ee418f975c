#!/usr/bin/env python3
"""kdkedu's interrupt-to-completion latency, as a log2 histogram (bcc).

    python experiments/kdkedu_irq_latency.py [OPERATIONS]

Needs a VM with the edu device (kdk up --device edu). Loads kdkedu,
attaches kdkedu_irq_latency.c (its hard handler to the end of its bottom half),
computes OPERATIONS factorials (default 20) through /dev/kdkedu0, and
prints the interrupts and bottom halves seen and the histogram.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from kdk.api import Kdk
from kdk.errors import KdkError, script
from kdk.guest.device import ioctl_numbers
from kdk.trace.bpf import Probes, histogram_text

HERE = Path(__file__).resolve().parent
FACTORIAL = ioctl_numbers(HERE.parent / "drivers/kdkedu/kdkedu_ioctl.h")["KDKEDU_IOC_FACTORIAL"]


def factorials(count: int) -> list[str]:
    """A guest command computing 0! .. (count-1)! (mod 13) through the driver,
    20 ms apart: a BPF program that runs when another one is running on its
    CPU is skipped (the kernel's bpf_prog_active), so an interrupt that came
    while the probe on the previous bottom half's return ran would not be
    counted (seen once in CI under TCG: 5 interrupts of 6)."""
    script = (
        "import fcntl, os, struct, time\n"
        "fd = os.open('/dev/kdkedu0', os.O_RDWR)\n"
        f"for n in range({count}):\n"
        f"    fcntl.ioctl(fd, {FACTORIAL}, struct.pack('I', n % 13))\n"
        "    time.sleep(0.02)\n"
    )
    return ["python3", "-c", script]


@dataclass(frozen=True)
class Latency:
    irqs: int  # hard handler calls seen
    bottom_halves: int  # bottom halves that ended
    histogram: dict[int, int]  # log2 slot of microseconds -> count


def measure(k: Kdk, operations: int) -> Latency:
    """Load kdkedu, run `operations` factorials under kdkedu_irq_latency.c."""
    k.load("kdkedu")
    probes = Probes(kprobes={"kdkedu_irq": "on_irq"}, kretprobes={"kdkedu_irq_thread": "on_done"})
    with k.bpf(HERE / "kdkedu_irq_latency.c", probes) as prog:
        res = k.exec(factorials(operations))
        if not res.ok:
            raise KdkError(f"the factorials failed: {res.stderr.decode(errors='replace')}")
        tables = prog.tables()
    counts = dict(tables["counts"])
    return Latency(counts[0], counts[1], dict(tables["latency_us"]))


def main() -> int:
    result = measure(Kdk(), int(sys.argv[1]) if sys.argv[1:] else 20)
    print(f"{result.irqs} interrupts, {result.bottom_halves} bottom halves")
    print(histogram_text(result.histogram, "us"))
    return 0


if __name__ == "__main__":
    script(main)
