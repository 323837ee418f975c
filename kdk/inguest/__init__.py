"""Programs and files that run inside the guest, not on the host.

Nothing here is imported by the host side: these files are read and sent
into the guest (over SSH, or through the VM's state folder, which the
guest mounts), so they work the same from a checkout and from a wheel.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """The file `name` of this folder (e.g. "init", "file_agent.py")."""
    return HERE / name


def text(name: str) -> str:
    """The text of the file `name` of this folder."""
    return path(name).read_text()


# Guest shell that sets $b to the static busybox when the guest has one (the
# host's, from busybox-static; a Vagrant box has none): `$b sleep`, `$b dd`
# start in a fraction of the time coreutils' dynamically linked programs
# take under TCG, and are coreutils' own when there is no busybox.
BUSYBOX = "b=; [ ! -x /bin/busybox ] || b=/bin/busybox"
