"""One OpenSSH connection shared by every `kdk` process that runs a guest command.

A `kdk exec` or `kdk load` is a new process: connecting on its own
(paramiko's import, key exchange, sshd's authentication in an emulated
guest) costs more than the command. So `kdk up` starts an OpenSSH master
connection (`ssh -M`) whose control socket lives in the VM's state folder,
and such a process runs its command on a new channel of it (`ssh -S`),
with its own stdin, stdout and stderr or with the output captured.

The master asks a quiet guest for a sign of life as kdk.guest.ssh does
(ServerAliveInterval=QUIET) and ends when ANSWER_WITHIN seconds of asking
got no answer; a command on it then ends with ssh's 255, and the master's
absence tells that from the command's own 255.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from shlex import quote

from ..errors import GuestHung, GuestTimeout
from ..inguest import BUSYBOX
from ..state import HOST_ALIAS, KNOWN_HOSTS, process_alive
from .netns import exec_prefix
from .ssh import ANSWER_WITHIN, QUIET, Endpoint, Result, command_line

CONTROL = "ssh.ctl"  # the master's control socket, in the VM's state folder
LOGIN = "ssh.ctl.login"  # the pid of the ssh that starts the master (logging in)
KEX = "curve25519-sha256,curve25519-sha256@libssh.org"  # the key exchange kdk asks for
SOCKET_PATH_MAX = 100  # a unix socket path longer than this does not bind
# How a command that `timeout` ended exits: 124 (coreutils', TERM), or
# killed 2 s later with `timeout` itself, or busybox's (which execs the
# command, so it dies of the signal): ssh says 255 for a command that died
# of a signal.
TIMED_OUT = (124, 255)
# The guest's `timeout`: busybox's when it has one (BUSYBOX). A dynamically
# linked program (coreutils', dash) costs ~90 ms to start under TCG, a
# static busybox ~20 ms. A command runs under /bin/sh, by its path:
# busybox's timeout would run its own sh (ash) for "sh", and that shell
# runs busybox's applets for the programs a command names (dd, ls, ...).
TIMEOUT = f"{BUSYBOX}; exec $b timeout -k 2"
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
        time.sleep(0.02)


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
        shell = SCRIPT_SHELL if script else SHELL
        remote = f"{TIMEOUT} {math.ceil(timeout)} {shell} -c {quote(line)}"
    argv = [
        *ssh_argv(ssh, ep, state),
        "-S",
        str(state / CONTROL),
        "-o",
        "ControlMaster=no",
        "-o",
        "LogLevel=QUIET",
        "-T",
        *(["-n"] if tty_in and feed is None else []),
        f"{ep.user}@{ep.host}",
        remote,
    ]
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
