"""A guest program kept for many tests (kdk.testing's fixtures and a test
file's own): started on first use, and again when the VM was booted again
since (a crash test's reboot ended the old one) or the program ended."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from ..api import Kdk


class GuestProgram(Protocol):
    def running(self) -> bool: ...

    def close(self) -> None: ...


P = TypeVar("P", bound=GuestProgram)


class PerBoot(Generic[P]):
    """`start(vm)` run once per boot of the VM, its program shared until then;
    one whose channel ended (`running()` False) is closed and started again."""

    def __init__(self, start: Callable[[Kdk], P]) -> None:
        self._start = start
        self._program: P | None = None
        self._vm_pid = 0

    def get(self, vm: Kdk) -> P:
        pid = vm.backend.require().pid
        program = self._program
        if program is None or pid != self._vm_pid or not program.running():
            self.close()
            program = self._program = self._start(vm)
            self._vm_pid = pid
        return program

    def close(self) -> None:
        if self._program is not None:
            self._program.close()
            self._program = None
