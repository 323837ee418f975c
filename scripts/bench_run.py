"""What the bench's scripts (bench.py, bench_kernel.py, bench_suite.py)
share: a row of the table, and a timed command that must succeed."""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path

Row = tuple[str, list[float], float | None]  # what was timed, seconds of each run, target
TAIL_LINES = 40  # of a failed command's output, shown when the bench stops


def failed(argv: list[str], code: int | None, output: str) -> SystemExit:
    """How the bench stops when a command it runs fails: the command, its
    exit status (None: it ran over its bound) and the tail of what it
    printed (stdout and stderr); all of that is kept in a file it names."""
    fd, kept = tempfile.mkstemp(prefix="kdk-bench-failed-", suffix=".log")
    with os.fdopen(fd, "w") as f:
        f.write(output)
    tail = "\n".join(output.rstrip().splitlines()[-TAIL_LINES:])
    return SystemExit(
        f"bench: {shlex.join(argv)} exited {code}; all its output: {kept}; its last:\n{tail}"
    )


def timed_run(
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    expect: int = 0,
    timeout: float | None = None,
    shown: list[str] | None = None,
) -> tuple[float, str]:
    """Wall seconds of `argv` (stdin empty) and what it printed, stdout
    and stderr together. The bench stops (`failed`, naming `shown` or
    `argv`) when it exits other than `expect` or runs over `timeout`."""
    t = time.monotonic()
    try:
        r = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as e:
        out = e.stdout if isinstance(e.stdout, str) else (e.stdout or b"").decode(errors="replace")
        raise failed(shown or argv, None, out) from e
    if r.returncode != expect:
        raise failed(shown or argv, r.returncode, r.stdout)
    return time.monotonic() - t, r.stdout
