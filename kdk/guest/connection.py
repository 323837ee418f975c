"""A fabric `Connection` to a kdk guest, for users' own scripts:
`run`, `sudo`, `put` and `get` on the guest with kdk's keys, the guest's
host key pinned (an unknown one is refused), and, for a guest reachable only
inside a network namespace (the Vagrant backend's), a socket opened there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .netns import connect_tcp
from .ssh import Endpoint, _b64, known_host_name

if TYPE_CHECKING:
    import fabric

CONNECT_TIMEOUT = 15.0


def connection(ep: Endpoint) -> fabric.Connection:
    """An open fabric Connection to the guest at `ep`."""
    import fabric
    import paramiko

    sock = connect_tcp(ep.host, ep.port, CONNECT_TIMEOUT, ep.netns)
    conn = fabric.Connection(
        ep.host,
        user=ep.user,
        port=ep.port,
        connect_timeout=CONNECT_TIMEOUT,
        connect_kwargs={
            "key_filename": str(ep.key),
            "allow_agent": False,
            "look_for_keys": False,
            "sock": sock,
        },
    )
    keytype, blob = ep.host_key.read_text().split()[:2]
    key = paramiko.PKey.from_type_string(keytype, _b64(blob))
    conn.client.get_host_keys().add(known_host_name(ep), keytype, key)
    conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        conn.open()
    except BaseException:
        sock.close()
        raise
    return conn
