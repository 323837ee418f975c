"""Files in the guest, driven from Python on the host: devices under test.

    with vm.open_device("/dev/kdkchar0", os.O_RDWR | os.O_NONBLOCK) as dev:
        dev.write(b"hello")
        assert dev.poll(select.POLLIN) & select.POLLIN
        assert dev.read(5) == b"hello"
        dev.read(1)                        # OSError(EAGAIN), as in the guest

Each `GuestFile` is a small Python process in the guest (kdk/guest_agent.py)
holding one open file, over its own SSH channel, so a blocking read in one
file and a write in another can run at once from two host threads. Errors
are the guest's: OSError with the guest's errno; a call that does not
finish in `timeout` seconds raises TimeoutError (the guest call is
interrupted by a signal, as a driver's wait queue must handle).
"""

from __future__ import annotations

import base64
import errno
import os
import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import inguest

if TYPE_CHECKING:
    from .ssh import Starter

AGENT = inguest.path("file_agent.py")
SLACK = 30.0  # seconds on top of a call's own timeout before the host gives up


class GuestFile:
    """One file open in the guest."""

    def __init__(self, start: Starter, path: str, flags: int) -> None:
        self.path = path
        self._agent = start(
            ["python3", "-I", "-S", "-u", "-c", AGENT.read_text()], f"the guest process for {path}"
        )
        self._open = True
        opened = self._call({"op": "open", "path": path, "flags": flags}, timeout=10)
        self.pid = int(opened["pid"])  # the guest process that holds the file

    def _call(self, req: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        req["timeout"] = timeout
        answer = self._agent.ask(req, (timeout or 0) + SLACK)
        if answer.get("timeout"):
            raise TimeoutError(
                errno.ETIMEDOUT, f"{req['op']} on {self.path}: no result in {timeout:g} s"
            )
        if "errno" in answer:
            code = answer["errno"]
            raise OSError(code, f"{os.strerror(code)} ({req['op']} on {self.path})")
        return answer

    def read(self, size: int, timeout: float = 10.0) -> bytes:
        return base64.b64decode(self._call({"op": "read", "size": size}, timeout)["data"])

    def write(self, data: bytes, timeout: float = 10.0) -> int:
        payload = {"op": "write", "data": base64.b64encode(data).decode()}
        return int(self._call(payload, timeout)["n"])

    def ioctl(self, request: int, arg: int | bytes = 0, timeout: float = 10.0) -> tuple[int, bytes]:
        """ioctl(2) with an int argument (passed as is, so also as a raw
        pointer) or a buffer (passed by address, returned as the kernel left it)."""
        req: dict[str, Any] = {"op": "ioctl", "request": request}
        if isinstance(arg, bytes):
            req["buf"] = base64.b64encode(arg).decode()
        else:
            req["arg"] = arg
        answer = self._call(req, timeout)
        return int(answer["ret"]), base64.b64decode(answer.get("buf") or b"")

    def ioctl_get_int(self, request: int) -> int:
        """An _IOR(.., int) command: the int the driver wrote."""
        return int(struct.unpack("i", self.ioctl(request, struct.pack("i", 0))[1])[0])

    def ioctl_set_int(self, request: int, value: int) -> int:
        """An _IOW(.., int) command; the ioctl's return value."""
        return self.ioctl(request, struct.pack("i", value))[0]

    def poll(self, events: int, timeout: float = 0.0) -> int:
        """The ready events among `events` (select.POLL*), waiting up to `timeout`."""
        answer = self._call({"op": "poll", "events": events, "timeout_ms": int(timeout * 1000)})
        return int(answer["revents"])

    def read_to_bad_pointer(self, size: int) -> int:
        """read(2) into an address the process does not own (expect EFAULT)."""
        return int(self._call({"op": "read_bad", "size": size}, 10)["n"])

    def write_from_bad_pointer(self, size: int) -> int:
        """write(2) from an address the process does not own (expect EFAULT)."""
        return int(self._call({"op": "write_bad", "size": size}, 10)["n"])

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self._call({"op": "close"}, 10)
            finally:
                self._agent.close()

    def __enter__(self) -> GuestFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ioc(direction: int, kind: int, nr: int, size: int) -> int:
    """The kernel's _IOC() for x86 and most architectures."""
    return direction << 30 | size << 16 | kind << 8 | nr


C_SIZES = {
    "int": 4,
    "unsigned int": 4,
    "long": 8,
    "unsigned long": 8,
    "char": 1,
    "short": 2,
    "__u32": 4,
    "__s32": 4,
    "__u64": 8,
    "__s64": 8,
    "__u8": 1,
    "__u16": 2,
}


def ioctl_numbers(header: str | Path) -> dict[str, int]:
    """The ioctl numbers a C header defines with _IO/_IOR/_IOW/_IOWR, so that
    Python uses exactly the numbers the driver was compiled with."""
    text = Path(header).read_text()
    chars = {m[1]: ord(m[2]) for m in re.finditer(r"#define\s+(\w+)\s+'(.)'", text)}
    out = {}
    pattern = r"#define\s+(\w+)\s+_IO(R|W|WR)?\(\s*(\w+|'.')\s*,\s*(\d+)\s*(?:,\s*([\w ]+?)\s*)?\)"
    for m in re.finditer(pattern, text):
        name, rw, kind, nr, ctype = m.groups()
        k = ord(kind[1]) if kind.startswith("'") else chars[kind]
        direction = {None: 0, "W": 1, "R": 2, "WR": 3}[rw]
        out[name] = _ioc(direction, k, int(nr), C_SIZES[ctype] if ctype else 0)
    return out
