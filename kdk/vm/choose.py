"""Which backend a VM uses: chosen with `kdk up --backend`, remembered in
the VM's state folder (a file named `backend`) until `kdk down --destroy`."""

from __future__ import annotations

from pathlib import Path

from ..errors import KdkError
from .backend import Backend
from .qemu import QemuBackend
from .vagrant import VagrantBackend

BACKENDS = ("qemu", "vagrant")
CHOICE = "backend"  # in the VM's state folder


def open_backend(project: Path, state_root: Path, vm: str, name: str | None = None) -> Backend:
    """The VM's backend: `name` when given (remembered from then on), else
    the one remembered, else QEMU. Switching the backend of a VM that runs
    is refused."""
    remembered = state_root / "vms" / vm / CHOICE
    try:
        old = remembered.read_text().strip()
    except OSError:
        old = "qemu"
    if old not in BACKENDS:
        old = "qemu"
    backend = _make(name or old, project, state_root, vm)
    if name is not None and name != old:
        if _make(old, project, state_root, vm).record() is not None:
            raise KdkError(f"the VM {vm!r} runs with the {old} backend: `kdk down` it first")
        remembered.parent.mkdir(parents=True, exist_ok=True)
        remembered.write_text(name + "\n")
    return backend


def forget(backend: Backend) -> None:
    """Back to the default backend (after `kdk down --destroy`)."""
    (backend.state.path / CHOICE).unlink(missing_ok=True)


def _make(name: str, project: Path, state_root: Path, vm: str) -> Backend:
    if name == "vagrant":
        return VagrantBackend(project, state_root, vm)
    if name == "qemu":
        return QemuBackend(project, state_root, vm)
    raise KdkError(f"no backend {name!r} (have: {', '.join(BACKENDS)})")
