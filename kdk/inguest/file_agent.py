"""The guest side of kdk.guest.device: one open file, driven by JSON lines.

Runs in the guest as `python3 -I -S -u -c <this file>` (standard library
only). Each request on stdin is one JSON object with an "op"; each answer
on stdout is one JSON object: the result, {"errno": N} when the system call
failed, or {"timeout": true} when it did not finish in time. Blocking calls
are interrupted by SIGALRM, which a driver sees as a pending signal.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import signal
import sys
from types import FrameType
from typing import Any


class Expired(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Expired


def _bad_pointer_call(op: str, fd: int, size: int) -> dict[str, Any]:
    """read(2)/write(2) with a buffer address no process owns: EFAULT."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    call = libc.read if op == "read_bad" else libc.write
    call.restype = ctypes.c_ssize_t
    n: int = call(fd, ctypes.c_void_p(1), ctypes.c_size_t(size))
    if n < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return {"n": n}


def handle(req: dict[str, Any], fd: int) -> dict[str, Any]:
    op = req["op"]
    if op == "open":
        return {"fd": os.open(req["path"], req["flags"]), "pid": os.getpid()}
    if op == "read":
        return {"data": base64.b64encode(os.read(fd, req["size"])).decode()}
    if op == "write":
        return {"n": os.write(fd, base64.b64decode(req["data"]))}
    if op == "ioctl":
        if req.get("buf") is not None:
            buf = bytearray(base64.b64decode(req["buf"]))
            ret = fcntl.ioctl(fd, req["request"], buf, True)
            return {"ret": ret, "buf": base64.b64encode(bytes(buf)).decode()}
        return {"ret": fcntl.ioctl(fd, req["request"], req.get("arg", 0))}
    if op == "poll":
        p = select.poll()
        p.register(fd, req["events"])
        ready = p.poll(req["timeout_ms"])
        return {"revents": ready[0][1] if ready else 0}
    if op in ("read_bad", "write_bad"):
        return _bad_pointer_call(op, fd, req["size"])
    if op == "close":
        os.close(fd)
        return {}
    raise ValueError("unknown op " + op)


def main() -> None:
    signal.signal(signal.SIGALRM, _alarm)
    fd = -1
    answer: dict[str, Any]
    for line in sys.stdin:
        req = json.loads(line)
        timeout: float = req.get("timeout") or 0
        try:
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                answer = handle(req, fd)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            fd = answer.get("fd", fd)
        except Expired:
            answer = {"timeout": True}
        except OSError as e:
            answer = {"errno": e.errno}
        sys.stdout.write(json.dumps(answer) + "\n")


main()
