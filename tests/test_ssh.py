"""Command lines as the guest's SSH server gets them, without a VM."""

from __future__ import annotations

import shlex
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kdk.guest.ssh import LONGEST_COMMAND, Endpoint, fit


def endpoint(staging: Path | None) -> Endpoint:
    return Endpoint("127.0.0.1", 2222, "root", Path("/k"), Path("/k.pub"), staging=staging)


def test_a_short_line_is_sent_as_it_is(tmp_path: Path) -> None:
    assert fit(endpoint(tmp_path), "echo hi") == "echo hi"
    assert not list(tmp_path.iterdir())


def test_a_long_line_runs_from_one_file_written_once(tmp_path: Path) -> None:
    staging = tmp_path / "commands"
    text = "é" * (LONGEST_COMMAND // 2)  # fewer characters than the limit, more bytes
    line = "printf '%s' " + shlex.quote(text)
    sent = fit(endpoint(staging), line)
    assert len(sent.encode()) < LONGEST_COMMAND
    (path,) = staging.iterdir()
    assert sent == f"exec /bin/sh {path}"
    assert fit(endpoint(staging), line) == sent and list(staging.iterdir()) == [path]
    out = subprocess.run(["sh", "-c", sent], capture_output=True, text=True, check=True)
    assert out.stdout == text  # the shell runs the file as the line


def test_without_staging_every_line_is_sent_as_it_is() -> None:
    line = "true " + "x" * (2 * LONGEST_COMMAND)
    assert fit(endpoint(None), line) == line  # (OpenSSH's sshd, e.g. a Vagrant box)


def test_threads_staging_the_same_line_at_once_all_get_it(tmp_path: Path) -> None:
    """Each thread writes its own temporary file (one per process raced:
    a thread's rename took the file another was still to rename)."""
    line = "true " + "x" * LONGEST_COMMAND
    for n in range(30):
        staging = tmp_path / str(n)
        start = threading.Barrier(8)

        def stage(_: int, staging: Path = staging, start: threading.Barrier = start) -> str:
            start.wait()
            return fit(endpoint(staging), line)

        with ThreadPoolExecutor(8) as pool:
            sent = set(pool.map(stage, range(8)))
        assert len(sent) == 1 and [p.suffix for p in staging.iterdir()] == [".sh"]
