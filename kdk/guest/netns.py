"""TCP connections to guests that are reachable only inside a network
namespace (the Vagrant backend's libvirt network lives in one).

The socket is created and connected by a thread that has joined the
namespace (setns applies to the calling thread only); the process's own
namespace is never changed, so host-side networking in the same program
is unaffected.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from pathlib import Path

CLONE_NEWNET = 0x40000000


def connect_tcp(host: str, port: int, timeout: float, netns: str | None = None) -> socket.socket:
    """A TCP connection to host:port, made from inside `netns` when given."""
    if netns is None:
        return socket.create_connection((host, port), timeout)
    result: list[socket.socket | OSError] = []

    def inside() -> None:
        try:
            fd = os.open(Path("/run/netns", netns), os.O_RDONLY)
            try:
                if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(
                        err, f"cannot enter network namespace {netns}: {os.strerror(err)}"
                    )
            finally:
                os.close(fd)
            result.append(socket.create_connection((host, port), timeout))
        except OSError as e:
            result.append(e)

    # A thread of its own: it ends in the namespace, and no other code runs there.
    t = threading.Thread(target=inside, name=f"connect-in-{netns}", daemon=True)
    t.start()
    t.join()
    got = result[0]
    if isinstance(got, OSError):
        raise got
    return got


def exec_prefix(netns: str | None) -> list[str]:
    """The argv prefix that runs a program (an OpenSSH client) inside `netns`."""
    return ["ip", "netns", "exec", netns] if netns else []
