"""One OpenSSH connection shared by every `kdk` process that runs a guest command.

A `kdk exec` or `kdk load` is a new process: connecting on its own
(paramiko's import, key exchange, sshd's authentication in an emulated
guest) costs more than the command. So `kdk up` starts an OpenSSH master
connection (`ssh -M`) whose control socket lives in the VM's state folder,
and such a process runs its command on a new channel of it (`ssh -S`),
with its own stdin, stdout and stderr or with the output captured. The
guest programs kdk speaks to in JSON lines (the net agent, the BPF runner,
a device's file agent) start there too while the process has no paramiko
connection of its own (MuxProcess).

The master asks a quiet guest for a sign of life as kdk.guest.ssh does
(ServerAliveInterval=QUIET) and ends when ANSWER_WITHIN seconds of asking
got no answer; a command on it then ends with ssh's 255, and the master's
absence tells that from the command's own 255.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from shlex import quote

from ..errors import GuestHung, GuestTimeout, KdkError
from ..inguest import BUSYBOX
from ..state import HOST_ALIAS, KNOWN_HOSTS, process_alive
from .netns import exec_prefix
from .ssh import ANSWER_WITHIN, POLL, QUIET, Endpoint, JsonProcess, Result, command_line

CONTROL = "ssh.ctl"  # the master's control socket, in the VM's state folder
LOGIN = "ssh.ctl.login"  # the pid of the ssh that starts the master (logging in)
KEX = "curve25519-sha256,curve25519-sha256@libssh.org"  # the key exchange kdk asks for
SOCKET_PATH_MAX = 100  # a unix socket path longer than this does not bind
# How a command that `timeout` ended exits: 124 (coreutils', TERM), 137
# (coreutils', KILL 2 s later), or busybox's (which execs the command, so
# it dies of the signal): ssh says 255 for a command that died of a signal.
TIMED_OUT = (124, 137, 255)
# The bound of kdk's own scripts: busybox's `timeout` when it has one
# (BUSYBOX). A dynamically linked program (coreutils', dash) costs ~90 ms
# to start under TCG, a static busybox ~20 ms. It signals the shell alone.
TIMEOUT = f"{BUSYBOX}; exec $b timeout -k 2"
# The bound of a user's command (`kdk exec --timeout`): coreutils'
# `timeout`, which signals the command's whole process group, so that
# what the shell started (a pipeline, `sleep 40` under dash) ends with it
# and lets go of the channel. It runs the command under /bin/sh by path.
USER_TIMEOUT = "exec timeout -k 2"
SHELL = "/bin/sh"
# kdk's own scripts (a load's, an unload's) run under busybox's sh where
# there is busybox (dash elsewhere): they are written for both, and name by
# path a program that must not be busybox's applet (/bin/dd, /sbin/modprobe).
SCRIPT_SHELL = "$b sh"


def ssh_argv(ssh: str, ep: Endpoint, state: Path) -> list[str]:
    """OpenSSH's command line up to the destination: kdk's key, and the
    guest's host key pinned through the state folder's known_hosts."""
    return [
        ssh,
        "-i",
        str(ep.key),
        "-p",
        str(ep.port),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"HostKeyAlias={HOST_ALIAS}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={state / KNOWN_HOSTS}",
        "-o",
        "BatchMode=yes",
        # Not OpenSSH 9's default sntrup761x25519: a login under TCG takes
        # ~0.34 s with curve25519 against ~0.6 s with it.
        "-o",
        f"KexAlgorithms={KEX}",
    ]


def login_argv(ssh: str, ep: Endpoint, state: Path, command: Sequence[str]) -> list[str]:
    """`kdk ssh`: OpenSSH into the guest (in its network namespace, for a
    guest reached through one) running `command`, else an interactive bash
    (the guest's login shell is dash: fast for commands)."""
    argv = [*exec_prefix(ep.netns), *ssh_argv(ssh, ep, state), "-o", "LogLevel=ERROR"]
    if command:
        return [*argv, f"{ep.user}@{ep.host}", *command]
    return [*argv, "-t", f"{ep.user}@{ep.host}", "exec bash --login"]


def start_master(ep: Endpoint, state: Path) -> None:
    """Start the master logging in, in the background (the first command
    waits for it: see `_wait_login`); without ssh, or with a state folder
    too deep for a socket, there is none (commands connect)."""
    ssh = shutil.which("ssh")
    control = state / CONTROL
    if ssh is None or ep.netns is not None or len(str(control)) > SOCKET_PATH_MAX:
        return
    control.unlink(missing_ok=True)
    alive = [
        "-o",
        f"ServerAliveInterval={QUIET:g}",
        "-o",
        f"ServerAliveCountMax={round(ANSWER_WITHIN / QUIET)}",
    ]
    argv = [
        *ssh_argv(ssh, ep, state),
        *alive,
        "-o",
        "LogLevel=QUIET",
        "-M",
        "-N",
        "-f",
        "-S",
        str(control),
        f"{ep.user}@{ep.host}",
    ]
    # -f: the process exits once logged in (its control socket made),
    # leaving the master behind; until then LOGIN names it.
    quiet = subprocess.DEVNULL
    proc = subprocess.Popen(argv, stdin=quiet, stdout=quiet, stderr=quiet, start_new_session=True)
    (state / LOGIN).write_text(f"{proc.pid}\n")


def _wait_login(state: Path) -> None:
    """Wait (bounded) while the master `kdk up` started is still logging in."""
    try:
        pid = int((state / LOGIN).read_text())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + ANSWER_WITHIN
    while not (state / CONTROL).exists() and time.monotonic() < deadline:
        if not process_alive(pid, CONTROL):
            return
        time.sleep(0.005)


def master_alive(ep: Endpoint, state: Path) -> bool:
    ssh = shutil.which("ssh")
    control = state / CONTROL
    if ssh is None or not control.exists():
        return False
    argv = [ssh, "-S", str(control), "-O", "check", f"{ep.user}@{ep.host}"]
    try:
        return subprocess.run(argv, capture_output=True, timeout=ANSWER_WITHIN).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def channel_argv(
    ssh: str, ep: Endpoint, state: Path, remote: str, no_stdin: bool = False, alone: bool = True
) -> list[str]:
    """OpenSSH's command line that runs `remote` on a new channel of the
    master (`no_stdin`: with none, ssh -n). Where the master cannot serve
    it, ssh connects itself (`alone`), else it fails (ssh's 255)."""
    return [
        *ssh_argv(ssh, ep, state),
        # ssh falls back to its own connection when the master ends before
        # the channel is open (a hung guest), and that connection's wait
        # for the guest's banner has no end.
        *([] if alone else ["-o", "ProxyCommand=false"]),
        "-S",
        str(state / CONTROL),
        "-o",
        "ControlMaster=no",
        "-o",
        "LogLevel=QUIET",
        "-T",
        *(["-n"] if no_stdin else []),
        f"{ep.user}@{ep.host}",
        remote,
    ]


def run(
    ep: Endpoint,
    state: Path,
    command: str | Sequence[str],
    timeout: float | None,
    tty_in: bool = False,
    feed: bytes | None = None,
    capture: bool = False,
    script: bool = False,
) -> Result | None:
    """Run `command` on the master; None when there is no master. Its
    stdin is this process's (none when that is a terminal, `tty_in`), or
    `feed`; its stdout and stderr are this process's, or captured into
    the Result (`capture`). `script`: a script of kdk's own, for
    SCRIPT_SHELL. GuestTimeout after `timeout` s, GuestHung when the master
    ended meanwhile."""
    ssh = shutil.which("ssh")
    if ssh is None:
        return None
    _wait_login(state)
    if not (state / CONTROL).exists():
        return None  # (a master that died leaves its socket: ssh then connects itself)
    line = command_line(command)
    # The master holds this process's stdout and stderr while the command
    # runs, even after this ssh is killed: the guest ends it on time itself.
    remote = line
    if timeout is not None:
        # Whole seconds: busybox's timeout counts them (it ends "1.5" after 1 s).
        bound, shell = (TIMEOUT, SCRIPT_SHELL) if script else (USER_TIMEOUT, SHELL)
        remote = f"{bound} {math.ceil(timeout)} {shell} -c {quote(line)}"
    argv = channel_argv(ssh, ep, state, remote, no_stdin=tty_in and feed is None)
    pipe = subprocess.PIPE if capture else None
    started = time.monotonic()
    with subprocess.Popen(
        argv, stdin=None if feed is None else subprocess.PIPE, stdout=pipe, stderr=pipe
    ) as proc:
        try:
            out, err = proc.communicate(feed, None if timeout is None else timeout + ANSWER_WITHIN)
            code = proc.returncode
        except subprocess.TimeoutExpired:  # the guest did not end it either
            proc.kill()
            out, err = proc.communicate()
            code = 255
    if code == 255 and not master_alive(ep, state):
        raise GuestHung(
            f"guest lost during {line!r}: the guest did not answer keepalives "
            "(the shared ssh connection ended)"
        )
    if timeout is not None and code in TIMED_OUT and time.monotonic() - started >= timeout:
        raise GuestTimeout(f"{line!r} did not finish in {timeout:g} s")
    return Result(code, out or b"", err or b"")


def start(ep: Endpoint, state: Path, command: str, what: str) -> JsonProcess | None:
    """A JsonProcess running `command` on the master; None when there is
    none, it ended, or it is still logging in. (Right after `kdk up`, a
    connection of the caller's own, made while the master logs in, answered
    first: a first topology after a boot took 3.0 s against 3.3 s waiting
    for the master, medians of 5 paired.)"""
    ssh = shutil.which("ssh")
    if ssh is None or not master_alive(ep, state):
        return None
    return MuxProcess(ep, state, channel_argv(ssh, ep, state, command, alone=False), what)


class MuxProcess(JsonProcess):
    """A JsonProcess whose program runs on a channel of the master, through
    an OpenSSH client of this process: its stdin and stdout are pipes, its
    stderr a file (what a pipe would hold back could stall the channel).

    A hung guest ends the master (its keepalives), and with it this client:
    the program's output ends, and the master's absence tells GuestHung
    from the program's own end. The client has a session of its own: a
    terminal's Ctrl-C, which goes to this process's whole group, is this
    process's to handle (`kdk trace` reads its counters then), and would
    otherwise end the client, and the program with it."""

    def __init__(self, ep: Endpoint, state: Path, argv: list[str], what: str) -> None:
        super().__init__(what)
        self._ep, self._state = ep, state
        self._err = tempfile.TemporaryFile()  # noqa: SIM115 (the process's life: close())
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._err,
            bufsize=0,
            start_new_session=True,
        )

    def running(self) -> bool:
        return self._proc.poll() is None

    def _send(self, data: bytes) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(data)

    def _receive(self, heard: float, deadline: float) -> tuple[bytes | None, float]:
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        now = time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(0.0, min(deadline, now + POLL) - now))
        if not ready:
            return None, heard
        return os.read(fd, 1 << 20), time.monotonic()

    def _ended(self) -> KdkError:
        if not master_alive(self._ep, self._state):
            return GuestHung(
                f"guest lost while waiting for {self.what}: the guest did not answer "
                "keepalives (the shared ssh connection ended)"
            )
        return super()._ended()

    def stderr(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(10.0)
        self._err.seek(0)
        return self._err.read().decode(errors="replace").strip()

    def close(self) -> None:
        """End the program's input and this client (the master then closes
        the channel, as a paramiko channel's close does)."""
        proc = self._proc
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        proc.terminate()
        try:
            proc.wait(ANSWER_WITHIN)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._err.close()
