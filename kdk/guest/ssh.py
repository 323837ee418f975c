"""Running commands in the guest over SSH (paramiko).

One `Guest` is one SSH connection with kdk's own keys, pinned to the host
key kdk generated for that VM. `run()` streams or captures a command's
output, enforces a timeout, and tells "the command failed" (a non-zero
`Result.exit_code`) from "the guest was lost" (`VMLost`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import GuestTimeout, KdkError, VMLost

if TYPE_CHECKING:
    import paramiko

# paramiko logs a lost connection with a traceback; kdk says it in one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False


@dataclass(frozen=True)
class Endpoint:
    """How to reach a guest's sshd."""

    host: str
    port: int
    user: str
    key: Path  # private key file
    host_key: Path  # the guest's public host key (OpenSSH format)


@dataclass(frozen=True)
class Result:
    """What a finished guest command left behind."""

    exit_code: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def command_line(command: str | Sequence[str]) -> str:
    """A shell command line: strings are used as they are, argv is quoted."""
    return command if isinstance(command, str) else shlex.join(command)


class Guest:
    """An SSH connection to a running guest."""

    def __init__(self, endpoint: Endpoint, alive: Callable[[], bool]) -> None:
        self.endpoint = endpoint
        self._alive = alive
        self._client: paramiko.SSHClient | None = None

    def _lost(self, what: str) -> VMLost:
        why = "the VM is no longer running" if not self._alive() else "the connection dropped"
        return VMLost(f"guest lost {what}: {why}")

    def connect(self, timeout: float = 15.0) -> None:
        """Open the connection; VMLost when the guest does not answer."""
        import paramiko

        ep = self.endpoint
        client = paramiko.SSHClient()
        keytype, blob = ep.host_key.read_text().split()[:2]
        client.get_host_keys().add(
            f"[{ep.host}]:{ep.port}", keytype, paramiko.PKey.from_type_string(keytype, _b64(blob))
        )
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                ep.host,
                ep.port,
                ep.user,
                key_filename=str(ep.key),
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except (OSError, paramiko.SSHException) as e:
            client.close()
            raise self._lost(f"while connecting ({e})") from None
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> Guest:
        if self._client is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(
        self,
        command: str | Sequence[str],
        *,
        timeout: float | None = 60.0,
        stdout: IO[bytes] | None = None,
        stderr: IO[bytes] | None = None,
        stdin: IO[bytes] | None = None,
        pty: bool = False,
    ) -> Result:
        """Run `command`, capturing its output (and copying it to the given
        streams as it comes). Raises GuestTimeout after `timeout` seconds
        (None: no limit) and VMLost when the guest goes away mid-command."""
        import paramiko

        chan = self._open(command, pty)
        transport = chan.get_transport()
        if stdin is not None:
            threading.Thread(target=_pump, args=(stdin, chan), daemon=True).start()
        else:
            chan.shutdown_write()
        out: list[bytes] = []
        err: list[bytes] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while True:
                while chan.recv_ready():
                    _take(chan.recv(65536), out, stdout)
                while chan.recv_stderr_ready():
                    _take(chan.recv_stderr(65536), err, stderr)
                if (
                    chan.exit_status_ready()
                    and not chan.recv_ready()
                    and not chan.recv_stderr_ready()
                ):
                    break
                if chan.closed or transport.is_active() is False:
                    raise self._lost(f"during {command_line(command)!r}")
                wait = 1.0 if deadline is None else min(1.0, deadline - time.monotonic())
                if wait <= 0:
                    raise GuestTimeout(f"{command_line(command)!r} did not finish in {timeout:g} s")
                select.select([chan], [], [], wait)
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise self._lost(f"during {command_line(command)!r} ({e})") from None
        finally:
            chan.close()
        code = chan.recv_exit_status()
        if code < 0:
            raise self._lost(f"during {command_line(command)!r}")
        return Result(code, b"".join(out), b"".join(err))

    def _open(self, command: str | Sequence[str], pty: bool = False) -> paramiko.Channel:
        """A channel on which `command` has just been started."""
        import paramiko

        if self._client is None:
            self.connect()
        assert self._client is not None
        try:
            transport = self._client.get_transport()
            assert transport is not None
            chan = transport.open_session(timeout=15.0)
            if pty:
                chan.get_pty()
            chan.exec_command(command_line(command))
        except (OSError, EOFError, paramiko.SSHException, AssertionError) as e:
            raise self._lost(f"starting {command_line(command)!r} ({e})") from None
        return chan

    def start(self, command: str | Sequence[str], what: str) -> JsonProcess:
        """Start a long-running guest program that reads one JSON value a
        line and answers each with one JSON object a line."""
        return JsonProcess(self._open(command), what)

    def check(self, command: str | Sequence[str], *, timeout: float | None = 60.0) -> Result:
        """Run `command`, raising KdkError with its stderr when it fails."""
        result = self.run(command, timeout=timeout)
        if not result.ok:
            msg = (result.stderr or result.stdout).decode(errors="replace").strip()
            raise KdkError(
                f"guest command {command_line(command)!r} failed ({result.exit_code}): {msg}"
            )
        return result


class JsonProcess:
    """A program in the guest spoken to in JSON lines over its own channel."""

    def __init__(self, chan: paramiko.Channel, what: str) -> None:
        self._chan = chan
        self._buf = b""
        self.what = what  # for messages: "the guest process for /dev/x"

    def ask(self, request: object, timeout: float) -> dict[str, Any]:
        """Send one request, wait up to `timeout` s for its answer; VMLost
        when the program ended or did not answer."""
        try:
            self._chan.sendall(json.dumps(request).encode() + b"\n")
            self._chan.settimeout(timeout)
            while b"\n" not in self._buf:
                chunk = self._chan.recv(1 << 20)
                if not chunk:
                    raise VMLost(f"{self.what} ended: {self.stderr() or 'no message'}")
                self._buf += chunk
        except OSError as e:  # socket.timeout included
            raise VMLost(f"no answer from {self.what} ({e or 'timeout'})") from None
        line, self._buf = self._buf.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        return answer

    def stderr(self) -> str:
        """What the program printed on stderr, read until it ended (10 s at most)."""
        err = b""
        self._chan.settimeout(10.0)
        with contextlib.suppress(OSError):
            while chunk := self._chan.recv_stderr(65536):
                err += chunk
        return err.decode(errors="replace").strip()

    def close(self) -> None:
        """Close the channel; the program sees the end of its input."""
        self._chan.close()


def _b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


def _take(data: bytes, into: list[bytes], stream: IO[bytes] | None) -> None:
    into.append(data)
    if stream is not None:
        stream.write(data)
        stream.flush()


def _pump(src: IO[bytes], chan: paramiko.Channel) -> None:
    """Copy `src` into the channel's stdin, then send EOF."""
    try:
        while data := src.read1(65536) if hasattr(src, "read1") else src.read(65536):
            chan.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError, EOFError):
            chan.shutdown_write()
