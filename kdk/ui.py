"""What kdk shows while it works: one-line messages and a progress line.

On a terminal, long steps show a spinner with the elapsed time (rich); in a
log (CI, a pipe) each step is one plain line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


def say(message: str) -> None:
    """One line to stderr, prefixed so it stands apart from guest output."""
    print(f"kdk: {message}", file=sys.stderr, flush=True)


class Steps(Protocol):
    def __call__(self, name: str) -> None: ...


@contextmanager
def progress(title: str) -> Iterator[Steps]:
    """A progress indicator; the yielded callable names the current step."""
    if not sys.stderr.isatty():
        yield lambda name: say(f"{title}: {name}")
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(title)
        yield lambda name: bar.update(task, description=f"{title}: {name}")
