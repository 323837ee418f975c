"""The guest's servers (the net agent's, bcc's): their relay, and the net
agent's server run on the host, without a VM (its sessions only answer
"hello" here: nothing touches the host's network)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdk import inguest
from kdk.net.topology import AGENT, AGENT_PYTHON

# The agent's text run as its file, with pyroute2 made unimportable first
# when asked: `python3 -c CODE AGENT --serve PREFIX [hide]`.
RUN = (
    "import sys\n"
    "if sys.argv[-1] == 'hide':\n"
    "    sys.modules['pyroute2'] = None; sys.argv.pop()\n"
    "path = sys.argv.pop(1)\n"
    "exec(compile(open(path).read(), path, 'exec'))\n"
)


def test_the_relay_is_valid_for_dash_and_named_by_the_servers_text() -> None:
    script = inguest.relay("net", AGENT_PYTHON, "print('server')\n")
    res = subprocess.run(["dash", "-n"], input=script, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "exec nc -UN /run/kdk/net-" in script and script.endswith(".sock")
    a, b = inguest.relay("bpf", "python3", "x"), inguest.relay("bpf", "python3", "y")
    assert a != b  # a changed server starts its own


@pytest.fixture
def folder() -> Iterator[Path]:
    """A short folder for unix sockets (a path over 107 bytes does not bind)."""
    path = Path(tempfile.mkdtemp(prefix="kdk-", dir="/tmp"))
    yield path
    shutil.rmtree(path)


def server(prefix: Path, *extra: str) -> subprocess.Popen[bytes]:
    """The agent's server on the host, listening (its pid file written)."""
    argv = ["/usr/bin/python3", "-I", "-S", "-c", RUN, str(AGENT), "--serve", str(prefix), *extra]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not prefix.with_suffix(".pid").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the server did not listen"
        time.sleep(0.05)
    return proc


def hello(prefix: Path) -> dict[str, object]:
    """One session's answer to "hello"; the session ends with the socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(30)
        s.connect(str(prefix.with_suffix(".sock")))
        s.sendall(b'{"op": "hello"}\n')
        with s.makefile() as f:
            answer = json.loads(f.readline())
    assert isinstance(answer, dict)
    return answer


def test_each_session_is_a_process_of_its_own_forked_with_pyroute2_imported(
    folder: Path,
) -> None:
    proc = server(folder / "net")
    try:
        first, second = hello(folder / "net"), hello(folder / "net")
        assert first["pyroute2"] == second["pyroute2"] == "IPRoute and netns"
        pids = {first["pid"], second["pid"]}
        assert len(pids) == 2 and proc.pid not in pids  # forked, one a session
        assert first["import_s"] == second["import_s"]  # imported once
        assert proc.poll() is None  # a session's end is not the server's
    finally:
        proc.terminate()
        proc.wait(10)


def test_without_pyroute2_every_session_gets_one_line_naming_it(folder: Path) -> None:
    proc = server(folder / "net", "hide")
    try:
        for _ in range(2):  # the server stays, and tries the import again
            assert hello(folder / "net") == {
                "error": "pyroute2 is missing in the guest: "
                "install Debian's python3-pyroute2 on the host"
            }
    finally:
        proc.terminate()
        proc.wait(10)
