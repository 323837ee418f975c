"""The kernel rows of `make bench` (issue 16): `kdk kernel build` and the
debug kernel it makes.

- 12a/12b, only with `--kernel-cold` (each is a whole kernel build: 20-40
  min on 2 cores): `kdk kernel build --debug` from nothing, in a cache of
  its own with an empty ccache (the unpacked Debian source is shared and
  its unpacking not timed), then virtme-ng's `vng --build` of a copy of the
  same tree (the copy not timed) with kdk's debug fragment as its `--config`
  (virtme-ng's own base, defconfig, with the same checks), in the same run.
- 12c: `kdk kernel build --debug` again with nothing changed.
- 12d: after one changed .c file of the kernel proper: a comment appended,
  so that ccache cannot answer from the last build; put back afterwards and
  built again, so the cache is as before.
- 12e/12f: `kdk up --kernel debug` from a stopped VM to ready (row 1 is the
  distribution kernel's), and a warm `kdk load hello` on it (row 3's peer).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_run import Row, timed_run

from kdk.api import Kdk
from kdk.kbuild.build import DEBIAN_SOURCE
from kdk.kernel import user_cache

DEBUG_FRAGMENT = Path(__file__).resolve().parent.parent / "kdk/kbuild/fragments/debug.config"
CHANGED_FILE = "kernel/panic.c"  # a file of the kernel proper, in every config


def peer_env() -> dict[str, str]:
    """virtme-ng's environment: vng runs virtme-run and virtme-configkernel
    from PATH, which are in this venv."""
    venv_bin = str(Path(sys.executable).parent)
    return dict(os.environ, PATH=venv_bin + os.pathsep + os.environ.get("PATH", ""))


def cold_rows() -> list[Row]:
    """kdk's cold debug build, then vng's of the same tree, one after the other."""
    source = user_cache() / "sources"
    kdk_build = [sys.executable, "-m", "kdk.cli", "kernel", "build", "--debug"]
    with tempfile.TemporaryDirectory(prefix="kdk-bench-kernel-", dir=Path.home()) as tmp:
        root = Path(tmp)
        (root / "kdk").mkdir()
        (root / "kdk" / "sources").symlink_to(source)
        env = {k: v for k, v in os.environ.items() if k != "CCACHE_DIR"}
        ours = timed_run(kdk_build, env=dict(env, XDG_CACHE_HOME=str(root)))[0]
        tree = root / "vng-src"
        shutil.copytree(source / DEBIAN_SOURCE, tree, symlinks=True)
        vng = ["vng", "--build", "--config", str(DEBUG_FRAGMENT)]
        theirs = timed_run(vng, env=peer_env(), cwd=tree)[0]
    return [
        ("12a. `kdk kernel build --debug`, cold (empty cache and ccache), one run", [ours], 900.0),
        (
            "12b. virtme-ng: `vng --build --config debug.config`, the same tree, cold, one run",
            [theirs],
            None,
        ),
    ]


def kernel_rows(k: Kdk, n: int, cold: bool, kdk: Callable[..., float]) -> list[Row]:
    """The rows of this file's docstring; `kdk` runs one kdk command (the
    bench's VM)."""
    rows = cold_rows() if cold else []
    build = ("kernel", "build", "--debug")
    kdk(*build)  # the cached build, made when missing or out of date
    rows.append(
        ("12c. `kdk kernel build --debug`, nothing changed", [kdk(*build) for _ in range(n)], 10.0)
    )
    changed = user_cache() / "sources" / DEBIAN_SOURCE / CHANGED_FILE
    text = changed.read_text()
    times = []
    try:
        for i in range(n):
            changed.write_text(f"{text}/* kdk bench {time.time()} {i} */\n")
            times.append(kdk(*build))
    finally:
        changed.write_text(text)
        kdk(*build)
    rows.append((f"12d. `kdk kernel build --debug` after changing {CHANGED_FILE}", times, 120.0))

    def cold_up() -> float:
        k.down()
        return kdk("up", "--kernel", "debug")

    ups = [cold_up() for _ in range(n)]
    rows.append(("12e. `kdk up --kernel debug`, cold (VM stopped) to ready", ups, 20.0))
    kdk("load", "hello")
    rows.append(
        (
            "12f. `kdk load hello` on the debug kernel, sources unchanged, VM running",
            [kdk("load", "hello") for _ in range(n)],
            None,
        )
    )
    k.down()
    return rows
