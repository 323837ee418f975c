"""Where a module build runs: `make` on the host, or a stand-in that runs it
elsewhere (the Vagrant guest, for a kernel whose headers only the guest
has). Below both the module builder and the VM backends, which use it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path

from .errors import BuildFailed

BUILD_TIMEOUT = 600.0  # seconds; a build still running then is reported, not waited on

# Runs a make command (argv, folder to run it in or None) somewhere; (exit
# status, what it printed). `host_make` by default; a guest's for a kernel
# whose headers only the guest has (a backend's build_target).
Make = Callable[[list[str], Path | None], tuple[int, str]]


def host_make(argv: list[str], cwd: Path | None) -> tuple[int, str]:
    """Run make on the host."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    if cwd is not None:
        env["PWD"] = str(cwd)  # Makefiles use $(PWD) for their folder
    proc = subprocess.run(
        argv, cwd=cwd, capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT
    )
    return proc.returncode, proc.stdout + proc.stderr


def static_program(src: Path, exe: Path) -> Path:
    """A C program of kdk's own for the guest (kdk/inguest), built on the
    host into `exe`, statically (the guest, or an initramfs without a C
    library, runs it as it is); built again when the source is newer."""
    if exe.exists() and exe.stat().st_mtime >= src.stat().st_mtime:
        return exe
    exe.parent.mkdir(parents=True, exist_ok=True)
    argv = ["gcc", "-O2", "-Wall", "-static", "-o", str(exe), str(src)]
    res = subprocess.run(argv, capture_output=True, text=True)
    if res.returncode:
        raise BuildFailed(f"building {src.name} failed", res.stderr)
    return exe
