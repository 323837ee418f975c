"""Programs and files that run inside the guest, not on the host.

Nothing here is imported by the host side: these files are read and sent
into the guest (over SSH, or through the VM's state folder, which the
guest mounts), so they work the same from a checkout and from a wheel.
"""

from __future__ import annotations

import hashlib
import shlex
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


def server_prefix(name: str, text: str) -> str:
    """Where the guest server of this text keeps its files: /run/kdk/
    <name>-<hash of the text>.{sock,pid,log}; a changed kdk starts its own."""
    return f"/run/kdk/{name}-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def relay(name: str, python: str, text: str) -> str:
    """Guest shell that connects its stdin and stdout to the server that
    `<python> -c <text> --serve PREFIX` runs (server_prefix), starting it
    first when it is not running, relayed by `nc -U`."""
    s = shlex.quote(server_prefix(name, text))
    missing = shlex.quote('{"error": "nc", "detail": "no nc in the guest"}')
    return "\n".join(
        [
            f"command -v nc >/dev/null || {{ echo {missing}; exit 1; }}",
            f'{{ read -r p < {s}.pid && kill -0 "$p"; }} 2>/dev/null || {{',
            f"    rm -f {s}.sock {s}.pid",
            f"    {python} -c {shlex.quote(text)} --serve {s} </dev/null >{s}.log 2>&1 &",
            f"    {BUSYBOX}",
            f"    while [ ! -e {s}.pid ] && kill -0 $! 2>/dev/null; do $b sleep 0.05; done",
            "}",
            f"exec nc -UN {s}.sock",
        ]
    )
