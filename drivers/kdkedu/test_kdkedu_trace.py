"""Tracing kdkedu's hardware path: `kdk trace` counts its interrupt handler
and bottom half once per operation, and experiments/kdkedu_irq_latency.c
measures the time from the interrupt to the end of the bottom half."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from experiments.kdkedu_irq_latency import factorials, measure
from kdk.api import Kdk
from kdk.testing import session_vm

pytestmark = [pytest.mark.devices("edu"), pytest.mark.module("kdkedu")]

OPS = 6


def test_kdk_trace_counts_handler_and_bottom_half_per_operation(loaded: Kdk) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "kdk.cli", "trace", "kdkedu", "--", *factorials(OPS)],
        cwd=loaded.project,
        env=dict(os.environ, KDK_VM=session_vm()),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    rows = [line.split() for line in run.stdout.splitlines()[1:]]
    calls = {row[0]: int(row[1]) for row in rows if len(row) == 4}  # FUNCTION CALLS TOTAL AVG
    assert (calls["kdkedu_irq"], calls["kdkedu_irq_thread"]) == (OPS, OPS)
    assert (calls["kdkedu_open"], calls["kdkedu_ioctl"], calls["kdkedu_release"]) == (1, OPS, 1)


def test_latency_from_interrupt_to_completion(vm: Kdk) -> None:
    lat = measure(vm, OPS)
    assert (lat.irqs, lat.bottom_halves, sum(lat.histogram.values())) == (OPS, OPS, OPS)
    assert max(lat.histogram) < 20  # every one within a second (2^20 us), even under TCG
