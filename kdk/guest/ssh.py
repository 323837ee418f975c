"""Running commands in the guest over SSH (paramiko).

One `Guest` is one SSH connection with kdk's own keys, pinned to the host
key kdk generated for that VM; every command runs on a channel of its own,
so one connection serves any number of commands. `run()` streams or
captures a command's output, enforces a timeout, and tells "the command
failed" (a non-zero `Result.exit_code`) from "the guest was lost" (`VMLost`)
and "the guest stopped answering" (`GuestHung`).

Liveness: a guest that says nothing for QUIET seconds during a command (a
`sleep`, a blocking read) is asked for a sign of life with an SSH keepalive
request on the same connection. sshd's main loop answers it without
starting a process, so the answer needs the guest's kernel (scheduler,
network stack) and sshd, and little else: a slow guest on a busy machine
still answers within a second or two; one that gives no answer in
ANSWER_WITHIN seconds is hung (QEMU stopped, or a kernel that no longer
schedules). Every other step that waits for the guest (connecting, opening
a channel, starting a command) has the same bound.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import GuestHung, GuestTimeout, KdkError, MissingDependency, VMLost
from .netns import connect_tcp

if TYPE_CHECKING:
    import paramiko

# paramiko logs a lost connection with a traceback; kdk says it in one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False

QUIET = 3.0  # seconds of silence on a command before the guest is asked if it lives
ANSWER_WITHIN = 10.0  # a guest that answers nothing for this long is hung
POLL = 0.25  # longest wait between looks at a channel (stderr alone wakes nothing)
# sshd may send a command's exit status before the last of its output, which
# ends with the channel's EOF: that is waited for, this long at most (a
# background process the command started may hold its output open).
TAIL = 1.0


@dataclass(frozen=True)
class Endpoint:
    """How to reach a guest's sshd."""

    host: str
    port: int
    user: str
    key: Path  # private key file
    host_key: Path  # the guest's public host key (OpenSSH format)
    netns: str | None = None  # the network namespace the guest is reached from


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
    """An SSH connection to a running guest; safe to share between threads."""

    def __init__(
        self,
        endpoint: Endpoint,
        alive: Callable[[], bool],
        held: Callable[[], bool] = lambda: False,
        on_master: Callable[[str, str], JsonProcess | None] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._alive = alive
        self._held = held  # whether a debugger (kdk gdb) may hold the guest stopped
        # `start` on an OpenSSH master: (command line, what) -> the process,
        # None when there is no master
        self._on_master = on_master
        self._client: paramiko.SSHClient | None = None
        self._probing = threading.Lock()  # one keepalive request at a time

    def lost(self, what: str) -> VMLost:
        why = "the VM is no longer running" if not self._alive() else "the connection dropped"
        return VMLost(f"guest lost {what}: {why}")

    @property
    def connected(self) -> bool:
        """Whether the connection is open (it may still have gone quiet)."""
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()

    def connect(self, timeout: float = ANSWER_WITHIN) -> None:
        """Open the connection; GuestHung when the guest does not answer
        within `timeout`, VMLost when it refuses or goes away."""
        import paramiko

        ep = self.endpoint
        try:
            keytype, blob = ep.host_key.read_text().split()[:2]
        except (OSError, ValueError) as e:
            raise MissingDependency(
                f"the guest's host key {ep.host_key} is unreadable ({e}): "
                "run `kdk down` and `kdk up`"
            ) from None
        client = paramiko.SSHClient()
        client.get_host_keys().add(
            known_host_name(ep), keytype, paramiko.PKey.from_type_string(keytype, _b64(blob))
        )
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        started = time.monotonic()
        try:
            sock = connect_tcp(ep.host, ep.port, timeout, ep.netns)
            # Commands are small back-to-back messages: without this, Nagle
            # and the guest's delayed ACKs add 40 ms to each.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.connect(
                ep.host,
                ep.port,
                ep.user,
                key_filename=str(ep.key),
                sock=sock,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except (OSError, EOFError, paramiko.SSHException) as e:
            client.close()
            if time.monotonic() - started >= timeout and self._alive():
                raise GuestHung(f"the guest did not answer a connection in {timeout:g} s") from None
            raise self.lost(f"while connecting ({e})") from None
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

    def _transport(self) -> paramiko.Transport:
        if self._client is None:
            self.connect()
        assert self._client is not None
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise self.lost("before the command")
        return transport

    @contextlib.contextmanager
    def _answered(self, what: str, transport: paramiko.Transport) -> Iterator[None]:
        """Bound a step that waits for the guest: when no answer came within
        ANSWER_WITHIN seconds, the connection is closed (which ends the wait)
        and GuestHung raised; a connection that dropped is VMLost."""
        import paramiko

        fired = threading.Event()

        def give_up() -> None:
            fired.set()
            transport.close()

        timer = threading.Timer(ANSWER_WITHIN, give_up)
        timer.daemon = True
        timer.start()
        try:
            yield
        except (OSError, EOFError, paramiko.SSHException) as e:
            if fired.is_set():
                raise GuestHung(f"the guest did not answer {what} in {ANSWER_WITHIN:g} s") from None
            raise self.lost(f"{what} ({e})") from None
        finally:
            timer.cancel()
        if fired.is_set():
            raise GuestHung(f"the guest did not answer {what} in {ANSWER_WITHIN:g} s")
        if not transport.is_active():
            raise self.lost(what)

    def probe(self) -> None:
        """Ask for a sign of life on this connection: an SSH keepalive request,
        which sshd answers without starting anything. GuestHung when no
        answer comes within ANSWER_WITHIN seconds, VMLost when the connection
        dropped."""
        transport = self._transport()
        with self._probing, self._answered("a keepalive request", transport):
            transport.global_request("keepalive@openssh.com", wait=True)

    def wait(self, chan: paramiko.Channel, heard: float, deadline: float | None) -> float:
        """Wait a little for `chan` to have something to read (at most until
        `deadline`); a guest quiet for QUIET seconds since `heard` is probed.
        Returns when the guest was last heard of."""
        now = time.monotonic()
        if now - heard >= QUIET:
            if not self._held():
                self.probe()
                return time.monotonic()
            heard = now  # stopped in gdb, a command waits until gdb lets it go on
        until = min(heard + QUIET, now + POLL, deadline if deadline is not None else now + POLL)
        ready, _, _ = select.select([chan], [], [], max(0.0, until - now))
        return time.monotonic() if ready else heard

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
        (None: no limit), GuestHung when the guest stops answering and
        VMLost when it goes away mid-command."""
        import paramiko

        what = f"during {command_line(command)!r}"
        chan = self._open(command, pty)
        if stdin is not None:
            threading.Thread(target=_pump, args=(stdin, chan), daemon=True).start()
        else:
            chan.shutdown_write()
        out: list[bytes] = []
        err: list[bytes] = []
        heard = time.monotonic()
        deadline = None if timeout is None else heard + timeout
        tail_until: float | None = None  # while output after the exit status may still come
        try:
            while True:
                while chan.recv_ready():
                    _take(chan.recv(65536), out, stdout)
                    heard = time.monotonic()
                while chan.recv_stderr_ready():
                    _take(chan.recv_stderr(65536), err, stderr)
                    heard = time.monotonic()
                if (
                    chan.exit_status_ready()
                    and not chan.recv_ready()
                    and not chan.recv_stderr_ready()
                ):
                    if chan.eof_received or chan.closed:
                        break
                    tail_until = tail_until or time.monotonic() + TAIL
                    if time.monotonic() >= tail_until:
                        break
                if chan.closed or not self.connected:
                    raise self.lost(what)
                if deadline is not None and time.monotonic() >= deadline:
                    raise GuestTimeout(f"{command_line(command)!r} did not finish in {timeout:g} s")
                heard = self.wait(chan, heard, deadline)
        except (OSError, EOFError, paramiko.SSHException) as e:
            raise self.lost(f"{what} ({e})") from None
        finally:
            chan.close()
        code = chan.recv_exit_status()
        if code < 0:
            raise self.lost(what)
        return Result(code, b"".join(out), b"".join(err))

    def _open(self, command: str | Sequence[str], pty: bool = False) -> paramiko.Channel:
        """A channel on which `command` has just been started."""
        transport = self._transport()
        with self._answered(f"starting {command_line(command)!r}", transport):
            chan = transport.open_session(timeout=ANSWER_WITHIN)
            if pty:
                chan.get_pty()
            chan.exec_command(command_line(command))
        return chan

    def start(self, command: str | Sequence[str], what: str) -> JsonProcess:
        """Start a long-running guest program that reads one JSON value a
        line and answers each with one JSON object a line: on the VM's
        OpenSSH master while this connection is not open (no login of its
        own: see kdk.guest.mux), else on a channel of this connection."""
        if self._client is None and self._on_master is not None:
            proc = self._on_master(command_line(command), what)
            if proc is not None:
                return proc
        return _ChannelProcess(self, self._open(command), what)

    def check(self, command: str | Sequence[str], *, timeout: float | None = 60.0) -> Result:
        """Run `command`, raising KdkError with its stderr when it fails."""
        result = self.run(command, timeout=timeout)
        if not result.ok:
            msg = (result.stderr or result.stdout).decode(errors="replace").strip()
            raise KdkError(
                f"guest command {command_line(command)!r} failed ({result.exit_code}): {msg}"
            )
        return result


# how a guest program spoken to in JSON lines is started: (argv, what) -> it
Starter = Callable[[Sequence[str], str], "JsonProcess"]


class JsonProcess:
    """A program in the guest spoken to in JSON lines: one request a line
    in, one JSON object a line out. Its transport (a channel of a paramiko
    connection, an OpenSSH client on the VM's master) supplies `_send`,
    `_receive`, `_ended`, `stderr` and `close`."""

    def __init__(self, what: str) -> None:
        self._buf = b""
        self.what = what  # for messages: "the guest process for /dev/x"

    def ask(self, request: object, timeout: float) -> dict[str, Any]:
        """Send one request, wait up to `timeout` s for its answer; VMLost
        when the program ended or did not answer, GuestHung when the whole
        guest stopped answering, KdkError when the answer is not JSON."""
        try:
            try:
                self._send(json.dumps(request).encode() + b"\n")
            except OSError:  # its input is closed: the program or its channel ended
                raise self._ended() from None
            heard = time.monotonic()
            deadline = heard + timeout
            while b"\n" not in self._buf:
                chunk, heard = self._receive(heard, deadline)
                if chunk == b"":
                    raise self._ended()
                if chunk is not None:
                    self._buf += chunk
                elif time.monotonic() >= deadline:
                    raise VMLost(f"no answer from {self.what} in {timeout:g} s")
        except OSError as e:
            raise VMLost(f"no answer from {self.what} ({e})") from None
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            answer = json.loads(line)
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            text = line.decode(errors="replace")
            raise KdkError(f"{self.what} sent a malformed answer: {text[:100]!r}")
        return answer

    def running(self) -> bool:
        """Whether the program's channel is still open (it may end at any time)."""
        raise NotImplementedError

    def _send(self, data: bytes) -> None:
        raise NotImplementedError

    def _receive(self, heard: float, deadline: float) -> tuple[bytes | None, float]:
        """What the program wrote next (b"" once it ended), or None when
        nothing came in a short wait (at most until `deadline`); and when
        the guest was last heard of (`heard` before)."""
        raise NotImplementedError

    def _ended(self) -> KdkError:
        """The error for a program whose output ended."""
        return VMLost(f"{self.what} ended: {self.stderr() or 'no message'}")

    def stderr(self) -> str:
        """What the program printed on stderr, read until it ended (10 s at most)."""
        raise NotImplementedError

    def close(self) -> None:
        """End the program's input (it sees its end) and let it go."""
        raise NotImplementedError


class _ChannelProcess(JsonProcess):
    """A JsonProcess on a channel of the Guest's paramiko connection."""

    def __init__(self, guest: Guest, chan: paramiko.Channel, what: str) -> None:
        super().__init__(what)
        self._guest = guest
        self._chan = chan

    def running(self) -> bool:
        chan = self._chan
        return not (chan.closed or chan.eof_received or chan.exit_status_ready())

    def _send(self, data: bytes) -> None:
        self._chan.sendall(data)

    def _receive(self, heard: float, deadline: float) -> tuple[bytes | None, float]:
        chan = self._chan
        if chan.recv_ready() or chan.eof_received or chan.closed:
            if not self._guest.connected:
                raise self._guest.lost(f"while waiting for {self.what}")
            return chan.recv(1 << 20), time.monotonic()
        if time.monotonic() >= deadline:
            return None, heard
        return None, self._guest.wait(chan, heard, deadline)

    def stderr(self) -> str:
        err = b""
        self._chan.settimeout(10.0)
        with contextlib.suppress(OSError):
            while chunk := self._chan.recv_stderr(65536):
                err += chunk
        return err.decode(errors="replace").strip()

    def close(self) -> None:
        self._chan.close()


def known_host_name(ep: Endpoint) -> str:
    """The name paramiko looks the guest's host key up by."""
    return ep.host if ep.port == 22 else f"[{ep.host}]:{ep.port}"


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
