"""One exception family for everything kdk reports to a user.

Each error carries the one line the CLI prints and the exit code it uses.
"The guest was lost" (255, like ssh) is kept apart from "a guest command
failed" (the command's own exit code) and from kdk's own errors (1).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import NoReturn


class KdkError(Exception):
    """Base of every error kdk turns into one line and an exit code."""

    exit_code = 1

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__(message)
        self.details = details  # printed before the one line, e.g. compiler errors


class UsageError(KdkError):
    """Arguments argparse took that kdk cannot use (a number out of range,
    options that do not go together): exit 2, as argparse's own."""

    exit_code = 2


class UnknownModule(KdkError):
    """A module name that is neither under kmods/ or drivers/ nor a path."""


class VMNotRunning(KdkError):
    """A command needs the VM and the VM is not up."""


class VMLost(KdkError):
    """The VM died or stopped answering while kdk was talking to it."""

    exit_code = 255


class GuestHung(VMLost):
    """The VM runs but the guest stopped answering (QEMU stopped, or a kernel
    that no longer schedules)."""


class GuestHeld(KdkError):
    """The guest does not answer because gdb holds it stopped."""


class BootFailed(KdkError):
    """The VM did not come up."""


class BuildFailed(KdkError):
    """Kbuild failed; the compiler's own messages were shown before this."""


class VermagicMismatch(KdkError):
    """A module was built for another kernel than the one the guest runs."""


class LoadFailed(KdkError):
    """insmod or rmmod failed in the guest."""


class InitHung(LoadFailed):
    """A module's init has not returned (kdk load waited its bound, or an
    earlier load's init still runs): the module stays half-loaded."""

    exit_code = 5


class MissingDependency(KdkError):
    """A program, file or package kdk needs is not installed."""


class GuestTimeout(KdkError):
    """A guest command did not finish in time."""


class KernelCrash(KdkError):
    """The guest kernel oopsed, panicked, locked up or warned during a command.

    The details hold the short report; a fatal crash has already been
    followed by a fresh boot of the VM when this is raised.
    """

    exit_code = 4


class KernelReport(KdkError):
    """One of the guest kernel's checks (KASAN, lockdep, sleep in atomic
    context, UBSAN) reported a bug during a command; the kernel goes on.

    The details hold the short reports; `checks` names the checks that
    reported, in order ("KASAN", "lockdep", "sleep in atomic", "UBSAN").
    """

    exit_code = 6

    def __init__(self, message: str, details: str = "", checks: Sequence[str] = ()) -> None:
        super().__init__(message, details)
        self.checks = list(checks)


class WireBusy(KdkError):
    """Another process owns the host end of the packet wire."""


class NetError(KdkError):
    """A step of building or using a topology failed in the guest."""


def script(main: Callable[[], int]) -> NoReturn:
    """Run a script's `main` (the experiments'): its exit code, or one line
    on stderr and 1 for an error of kdk's."""
    try:
        sys.exit(main())
    except KdkError as e:
        sys.exit(f"kdk: {e}")
