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
        assert first["pyroute2"] == second["pyroute2"] == "IPRoute"
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


# The agent's import of pyroute2, on the host: every module of traffic
# control's package is left lazy, and one is executed when a message of its kind is encoded
# and decoded (nothing is sent: no socket is opened).
DEFERRED = """import sys
exec(compile(open(sys.argv[1]).read(), sys.argv[1], 'exec'))
ipr, what = import_pyroute2()
def lazy():
    return sorted(name.rpartition('.')[2] for name, module in sys.modules.items()
                  if name.startswith('pyroute2.netlink.rtnl.tcmsg.')
                  and type(module).__name__ == '_LazyModule')
before = lazy()
from pyroute2.netlink.rtnl.tcmsg import tcmsg
msg = tcmsg()
parms = {'rate': 1000, 'buffer': 10, 'limit': 100}
msg['attrs'] = [('TCA_KIND', 'tbf'), ('TCA_OPTIONS', {'attrs': [('TCA_TBF_PARMS', parms)]})]
msg.encode()
back = tcmsg(msg.data)
back.decode()
limit = back.get_attr('TCA_OPTIONS').get_attr('TCA_TBF_PARMS')['limit']
import pyroute2.netlink.rtnl.tcmsg as package
folder = package.__path__[0]
files = sorted(f[:-3] for f in os.listdir(folder) if f.endswith('.py') and f != '__init__.py')
print(json.dumps([what, files, before, back.get_attr('TCA_KIND'), limit, lazy()]))
"""


def test_traffic_controls_modules_are_executed_when_used_not_at_the_import() -> None:
    argv = [*AGENT_PYTHON.split(), "-c", DEFERRED, str(AGENT)]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    what, files, before, kind, limit, after = json.loads(res.stdout)
    assert what == "IPRoute"
    assert before == files and {"sched_htb", "sched_tbf", "cls_u32"} <= set(before)
    assert (kind, limit) == ("tbf", 100)  # decoded by sched_tbf, executed for it
    assert "sched_tbf" not in after and "sched_htb" in after
