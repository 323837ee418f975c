#!/usr/bin/env python3
"""Time spent in do_init_module() for each module load.

    python experiments/init_time.py [MODULE...]

Attaches init_time.c in the running VM, loads each module kdk knows (or
those named), and prints how many times each was initialised and how long
its init took.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kdk.api import Kdk
from kdk.errors import script
from kdk.trace.bpf import Probes

HERE = Path(__file__).resolve().parent


def init_times(k: Kdk, modules: list[str]) -> dict[str, tuple[int, int]]:
    """{module: (loads, total nanoseconds in do_init_module)} while loading `modules`."""
    probes = Probes(
        kprobes={"do_init_module": "on_entry"}, kretprobes={"do_init_module": "on_return"}
    )
    with k.bpf(HERE / "init_time.c", probes) as prog:
        for name in modules:
            k.load(name)
            k.unload(name)
        rows = prog.tables()["init_ns"]
    return {key["s"]: (total["loads"], total["ns"]) for key, total in rows}


def main() -> int:
    k = Kdk()
    names = sys.argv[1:] or ["hello", "params", "kdkchar", "kdkmisc"]
    print(f"{'MODULE':<16} {'LOADS':>5} {'INIT (us)':>10}")
    for name, (loads, ns) in sorted(init_times(k, names).items()):
        print(f"{name:<16} {loads:>5} {ns / 1000 / loads:>10.1f}")
    return 0


if __name__ == "__main__":
    script(main)
