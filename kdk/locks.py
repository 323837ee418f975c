"""An exclusive lock on a file, across kdk processes, waited for a bounded time."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import KdkError


@contextmanager
def file_lock(path: Path, timeout: float, busy: str) -> Iterator[None]:
    """Hold an flock on `path` while the block runs; KdkError(`busy`) when
    another holder keeps it longer than `timeout` s. flock locks belong to
    an open file, so they end with the holder, however it ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:  # not inherited by the processes the holder starts
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise KdkError(busy) from None
                time.sleep(0.1)
        yield
