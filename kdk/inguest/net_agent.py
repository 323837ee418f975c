"""The guest side of kdk.net.topology: network namespaces built with pyroute2.

A server that stays up in the guest: `/usr/bin/python3 -I -S -u -c <this
file> --serve PREFIX` listens on the unix socket PREFIX.sock, writes its
pid to PREFIX.pid, and imports pyroute2 once (seconds under emulation).
The first session of a boot starts it (kdk.inguest.relay). Each connection
(kdk.net.topology relays one SSH channel to it with `nc -U`) is one
host's session, served by a child forked for it with pyroute2 imported:
each request is one JSON object with an "op"; each answer is one JSON
object, or {"error": "..."} when the step failed. The session ends with
its input, and the programs it started with it. Standard library and
Debian's python3-pyroute2 (0.7 series) only.

Namespaces are bind mounts under /run/netns (as `ip netns` makes them).
Netlink work in a namespace uses a socket opened while this process was
switched into it (setns), which stays bound to that namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_BIND = 4096
MS_REC = 16384
MS_SLAVE = 1 << 19
MNT_DETACH = 2
NUD_PERMANENT = 0x80  # a neighbour entry that never expires (linux/neighbour.h)
PR_SET_PDEATHSIG = 1
libc = ctypes.CDLL(None, use_errno=True)

if sys.flags.no_site:  # python3 -S: site's .pth files (read over 9p) skipped, its paths not
    import site

    sys.path += [p for p in site.getsitepackages() if os.path.isdir(p)]


def import_pyroute2() -> tuple[Any, str]:
    """pyroute2's IPRoute, importing only it, and what was imported
    ("IPRoute", else "the whole package").

    The package's own __init__ loads every plugin it names (entry points:
    all installed distributions' metadata is read, over 9p), its NDB and
    lab modules, and pyroute2.config asks `file` and `uname` (two programs)
    what the machine is: seconds under TCG that the agent never needs. So
    the package is entered without its __init__, and with no PATH while
    pyroute2.config is imported (platform falls back to Python's own
    answers). Anything unexpected there: the package's own import."""
    import importlib.util
    import types

    spec = importlib.util.find_spec("pyroute2")
    if spec is None:
        raise ImportError("No module named 'pyroute2'")
    path = os.environ.get("PATH")
    try:
        package = types.ModuleType("pyroute2")
        package.__path__ = list(spec.submodule_search_locations or [])
        package.__spec__ = spec
        sys.modules["pyroute2"] = package
        # pyroute2.lab wraps IPRoute's methods in mocks for pyroute2's own
        # tests (lab.use_mock, never set here) and imports unittest.mock
        # and asyncio for it: 0.9 s under TCG. Its LAB_API, with mocks
        # off, is a base class that adds nothing: so is this one.
        lab = types.ModuleType("pyroute2.lab")
        lab.LAB_API = type("LAB_API", (), {})  # type: ignore[attr-defined]
        sys.modules["pyroute2.lab"] = lab
        # Traffic control's message classes: 35 modules (its qdiscs,
        # classifiers and actions) imported with rtnl's marshal, ~half the
        # import under TCG; no request of the agent uses them. Each is
        # executed when first used (importlib's LazyLoader), not before.
        defer("pyroute2.netlink.rtnl.tcmsg", f"{package.__path__[0]}/netlink/rtnl/tcmsg")
        os.environ["PATH"] = ""
        from pyroute2.iproute.linux import IPRoute as ipr

        imported = "IPRoute"
    except Exception:
        for name in [m for m in sys.modules if m == "pyroute2" or m.startswith("pyroute2.")]:
            del sys.modules[name]
        from pyroute2 import IPRoute as ipr

        imported = "the whole package"
    finally:
        if path is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = path
    return ipr, imported


def defer(package: str, folder: str) -> None:
    """Import the package `package` (its files in `folder`) with each of
    its modules in sys.modules, and on the package, as a lazy module
    (importlib's LazyLoader): executed when one of its names is first
    looked up, not when the package's __init__ imports it."""
    import importlib
    import importlib.util

    parent, _, base = package.rpartition(".")
    init = importlib.util.spec_from_file_location(
        package, f"{folder}/__init__.py", submodule_search_locations=[folder]
    )
    if init is None or init.loader is None:
        raise ImportError(f"no package {package} in {folder}")
    pkg = importlib.util.module_from_spec(init)
    for file in sorted(os.listdir(folder)):
        name, ext = os.path.splitext(file)
        if ext != ".py" or name == "__init__":
            continue
        spec = importlib.util.spec_from_file_location(f"{package}.{name}", f"{folder}/{file}")
        if spec is None or spec.loader is None:
            continue
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        setattr(pkg, name, module)
    setattr(importlib.import_module(parent), base, pkg)
    sys.modules[package] = pkg
    init.loader.exec_module(pkg)


MISSING = "pyroute2 is missing in the guest: install Debian's python3-pyroute2 on the host"


class Pyroute2:
    """What the server imported once, for every session it forks: IPRoute
    (None while pyroute2 is missing)."""

    IPRoute: Any = None
    what = ""  # see import_pyroute2
    seconds = 0.0  # the import's
    ready = 0.0  # seconds from the server's start to the import's end
    born = 0.0  # when the server started, on time.monotonic's clock (serve sets it)

    @classmethod
    def load(cls) -> None:
        """Import pyroute2 if not done yet (again after it was missing: a
        package installed meanwhile is found)."""
        if cls.IPRoute is not None:
            return
        started = time.monotonic()
        try:
            cls.IPRoute, cls.what = import_pyroute2()
        except ImportError:
            return
        cls.seconds = round(time.monotonic() - started, 2)
        cls.ready = round(time.monotonic() - cls.born, 2)


def _born() -> float:
    """When this process started, on time.monotonic's clock (the uptime's)."""
    with open("/proc/self/stat") as f:
        started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as f:
        return time.monotonic() - (float(f.read().split()[0]) - started)


def _check(ret: int) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _setns(fd: int) -> None:
    _check(libc.setns(fd, CLONE_NEWNET))


def _enter(name: str) -> None:
    """Switch the calling process into namespace `name` (in a child: for good)."""
    fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


def _remove(name: str) -> None:
    """Remove namespace `name`'s name (as `ip netns delete` does); the
    kernel frees the namespace once nothing else holds it."""
    path = os.path.join(NETNS_DIR, name)
    libc.umount2(path.encode(), MNT_DETACH)  # EINVAL when never mounted: fine
    os.unlink(path)


def _listdir(path: str) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def _scratch(suffix: str) -> tuple[int, str]:
    """A new file in /tmp, open for writing, and its path."""
    while True:
        path = f"/tmp/kdk-net-{os.getpid()}-{time.monotonic_ns()}{suffix}"
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), path
        except FileExistsError:
            continue


class Missing(Exception):
    """The program to start is not in the guest (the host has not installed it)."""


def _started(start: Any, argv: list[str], **kwargs: Any) -> Any:
    """`start(argv, **kwargs)`; Missing when argv[0] itself is not there."""
    try:
        return start(argv, **kwargs)
    except FileNotFoundError as e:
        if e.filename != argv[0]:
            raise
        raise Missing(argv[0]) from None


class Agent:
    def __init__(self) -> None:
        self.root = os.open("/proc/self/ns/net", os.O_RDONLY)
        self.iprs: dict[str | None, Any] = {None: Pyroute2.IPRoute()}
        self.procs: dict[int, tuple[subprocess.Popen[bytes], str, str, str | None]] = {}

    def op_hello(self) -> dict[str, Any]:
        """Who answers (this session's pid), and the server's start: the
        seconds from its start to pyroute2 imported, the import's share of
        them and what it imported (see import_pyroute2)."""
        return {
            "pid": os.getpid(),
            "ready_s": Pyroute2.ready,
            "import_s": Pyroute2.seconds,
            "pyroute2": Pyroute2.what,
        }

    # -- netlink -------------------------------------------------------------
    def ipr(self, ns: str | None) -> Any:
        """A netlink socket in namespace `ns` (None: the guest's own)."""
        if ns not in self.iprs:
            assert ns is not None
            _enter(ns)
            try:
                self.iprs[ns] = Pyroute2.IPRoute()
            finally:
                _setns(self.root)
        return self.iprs[ns]

    def index(self, ns: str | None, ifname: str) -> int:
        found = self.ipr(ns).link_lookup(ifname=ifname)
        if not found:
            raise LookupError(f"no interface {ifname} in {ns or 'the root namespace'}")
        return int(found[0])

    def op_netns(self, name: str, ipv6: bool = True) -> dict[str, Any]:
        """A new namespace named `name`, its `lo` up; without IPv6 if not
        `ipv6` (no interface in it gets an IPv6 address, so none sends
        router or neighbour solicitations). Made as `ip netns add` makes
        one, without a fork: this process unshares into a new namespace,
        bind-mounts it at /run/netns/<name>, and goes back."""
        path = os.path.join(NETNS_DIR, name)
        os.makedirs(NETNS_DIR, exist_ok=True)
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
        try:
            _check(libc.unshare(CLONE_NEWNET))
            try:
                _check(libc.mount(b"/proc/self/ns/net", path.encode(), None, MS_BIND, None))
                ipr = self.iprs[name] = Pyroute2.IPRoute()  # bound to the new namespace
                ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
                if not ipv6:  # /proc/sys/net is the namespace of the writer
                    for conf in ("default", "all"):
                        with open(f"/proc/sys/net/ipv6/conf/{conf}/disable_ipv6", "w") as f:
                            f.write("1")
            finally:
                _setns(self.root)
        except BaseException:
            _remove(name)
            raise
        return {}

    def op_veth(self, a: list[Any], b: list[Any]) -> dict[str, Any]:
        """A veth pair with end a = [ns, ifname] and end b = [ns, ifname],
        made in one netlink request, each end in its namespace at once."""
        (ns_a, if_a), (ns_b, if_b) = a, b
        peer: dict[str, Any] = {"ifname": if_b}
        if ns_b is not None:
            peer["net_ns_fd"] = os.path.join(NETNS_DIR, ns_b)
        self.ipr(ns_a).link("add", ifname=if_a, kind="veth", peer=peer)
        return {}

    def op_take(self, ns: str, ifname: str) -> dict[str, Any]:
        """Move interface `ifname` of the guest's own namespace into `ns`
        (a driver's device, made in the root namespace)."""
        fd = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
        try:
            self.ipr(None).link("set", index=self.index(None, ifname), net_ns_fd=fd)
        finally:
            os.close(fd)
        return {}

    def op_bridge(self, ns: str | None, ifname: str) -> dict[str, Any]:
        ipr = self.ipr(ns)
        ipr.link("add", ifname=ifname, kind="bridge")
        ipr.link("set", index=self.index(ns, ifname), state="up")
        return {}

    def op_link(self, ns: str | None, ifname: str, **attrs: Any) -> dict[str, Any]:
        """Set attributes: state ("up"/"down"), master (a bridge's name),
        address (MAC), mtu."""
        if "master" in attrs:
            attrs["master"] = self.index(ns, attrs["master"])
        self.ipr(ns).link("set", index=self.index(ns, ifname), **attrs)
        return {}

    def op_addr(self, ns: str | None, ifname: str, address: str, prefixlen: int) -> dict[str, Any]:
        idx = self.index(ns, ifname)
        self.ipr(ns).addr("add", index=idx, address=address, prefixlen=prefixlen)
        return {}

    def op_neigh(self, ns: str | None, ifname: str, dst: str, lladdr: str) -> dict[str, Any]:
        """A permanent neighbour entry: `dst` is at MAC `lladdr` (no ARP)."""
        self.ipr(ns).neigh(
            "add", dst=dst, lladdr=lladdr, ifindex=self.index(ns, ifname), state=NUD_PERMANENT
        )
        return {}

    def op_route(self, ns: str | None, dst: str, gateway: str) -> dict[str, Any]:
        self.ipr(ns).route("add", dst=dst, gateway=gateway)
        return {}

    def op_links(self, ns: str | None) -> dict[str, Any]:
        """Every interface of `ns`: name, MAC, state, and its counters."""
        out = []
        for msg in self.ipr(ns).get_links():
            stats = msg.get_attr("IFLA_STATS64") or {}
            out.append(
                {
                    "ifname": msg.get_attr("IFLA_IFNAME"),
                    "index": msg["index"],
                    "address": msg.get_attr("IFLA_ADDRESS"),
                    "state": msg.get_attr("IFLA_OPERSTATE"),
                    "stats": {k: v for k, v in dict(stats).items() if isinstance(v, int)},
                }
            )
        return {"links": out}

    # -- processes -----------------------------------------------------------
    def op_run(
        self, ns: str | None, argv: list[str], timeout: float, input: str | None = None
    ) -> dict[str, Any]:
        proc = _started(
            subprocess.run,
            argv,
            input=None if input is None else input.encode(),
            capture_output=True,
            timeout=timeout,
            preexec_fn=_child_in(ns),
        )
        return {
            "code": proc.returncode,
            "stdout": proc.stdout.decode(errors="replace"),
            "stderr": proc.stderr.decode(errors="replace"),
        }

    def op_spawn(self, ns: str | None, argv: list[str]) -> dict[str, Any]:
        """Start `argv` in the background; its output goes to files."""
        out, err = _scratch(".out"), _scratch(".err")
        try:
            proc = _started(
                subprocess.Popen,
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out[0],
                stderr=err[0],
                preexec_fn=_child_in(ns),
            )
        except Missing:
            os.unlink(out[1])
            os.unlink(err[1])
            raise
        finally:
            os.close(out[0])
            os.close(err[0])
        self.procs[proc.pid] = (proc, out[1], err[1], ns)
        return {"id": proc.pid}

    def _output(self, pid: int) -> tuple[str, str]:
        _, out, err, _ = self.procs[pid]
        with open(out, "rb") as o, open(err, "rb") as e:
            return o.read().decode(errors="replace"), e.read().decode(errors="replace")

    def op_wait_output(self, id: int, text: str, timeout: float) -> dict[str, Any]:
        """Wait until the process printed `text` (a ready line), or ended."""
        deadline = time.monotonic() + timeout
        while True:
            out, err = self._output(id)
            ended = self.procs[id][0].poll() is not None
            if text in out or ended or time.monotonic() > deadline:
                return {"found": text in out, "ended": ended, "stdout": out, "stderr": err}
            time.sleep(0.02)

    def op_finish(self, id: int, timeout: float, signal: int = 0) -> dict[str, Any]:
        """Signal the process (when `signal`), wait for it (killed after
        `timeout`), and return its exit code and output."""
        proc, out_path, err_path, _ = self.procs[id]
        if signal and proc.poll() is None:
            proc.send_signal(signal)
        try:
            code = proc.wait(timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
            timed_out = True
        out, err = self._output(id)
        del self.procs[id]
        os.unlink(out_path)
        os.unlink(err_path)
        return {"code": code, "stdout": out, "stderr": err, "timed_out": timed_out}

    # -- teardown ------------------------------------------------------------
    def op_kill(self, ids: list[int]) -> dict[str, Any]:
        """Kill those of the processes `ids` that still run and forget them."""
        for pid in ids:
            if pid in self.procs:
                self.procs[pid][0].kill()
                self.op_finish(pid, 10)
        return {}

    def op_delete(self, names: list[str], timeout: float = 10.0) -> dict[str, Any]:
        """Kill every process in the namespaces (waiting until they are
        gone), then remove them; once nothing holds a namespace, the kernel
        frees it with its interfaces (a veth pair goes with either end)."""
        for name in names:
            self._kill_inside(name, timeout)
            ipr = self.iprs.pop(name, None)
            if ipr is not None:
                ipr.close()
            _remove(name)
        return {"deleted": names}

    def op_clean(self, prefix: str) -> dict[str, Any]:
        """Delete every namespace whose name starts with `prefix`."""
        names = sorted(n for n in _listdir(NETNS_DIR) if n.startswith(prefix))
        return self.op_delete(names)

    def _kill_inside(self, name: str, timeout: float) -> None:
        inode = os.stat(os.path.join(NETNS_DIR, name)).st_ino
        if inode == os.fstat(self.root).st_ino:
            return  # a name for the guest's own namespace: its processes stay
        target = f"net:[{inode}]"
        for pid, (proc, *_rest, ns) in list(self.procs.items()):
            if ns == name:
                proc.kill()
                proc.wait(timeout)
                self.op_finish(pid, 0)
        deadline = time.monotonic() + timeout
        while pids := [p for p in _pids() if _netns_of(p) == target]:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if time.monotonic() > deadline:
                raise TimeoutError(f"processes {pids} in {name} did not end")
            time.sleep(0.02)


def _child_in(ns: str | None) -> Any:
    """What a child runs before its program: it dies with the agent, and
    enters namespace `ns` (None: stays in the guest's own) with a /sys of
    that namespace (/sys/class/net lists its interfaces), mounted in a
    mount namespace of its own, as `ip netns exec` does."""

    def prepare() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if ns is not None:
            _enter(ns)
            _check(libc.unshare(CLONE_NEWNS))
            _check(libc.mount(None, b"/", None, MS_REC | MS_SLAVE, None))  # nothing goes back
            libc.umount2(b"/sys", MNT_DETACH)  # (EINVAL if none was mounted: fine)
            _check(libc.mount(ns.encode(), b"/sys", b"sysfs", 0, None))

    return prepare


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()]


def _netns_of(pid: int) -> str:
    """The process's network namespace ("net:[inode]"); "" once it is gone
    or a zombie (which no longer holds the namespace)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                return ""
        return os.readlink(f"/proc/{pid}/ns/net")
    except (OSError, IndexError):
        return ""


def session(conn: socket.socket) -> None:
    """One host's session, in a child of the server: its requests, until
    its input ends; then the programs it started are killed."""
    with conn.makefile("r") as rfile, conn.makefile("w") as wfile:

        def say(answer: dict[str, Any]) -> None:
            wfile.write(json.dumps(answer) + "\n")
            wfile.flush()

        if Pyroute2.IPRoute is None:  # the answer to the first request, once it came
            if rfile.readline():
                say({"error": MISSING})
            return
        agent = Agent()
        for line in rfile:
            req = json.loads(line)
            op = req.pop("op")
            try:
                answer = getattr(agent, "op_" + op)(**req)
            except Missing as e:  # the host names the package
                answer = {"missing": str(e)}
            except Exception as e:  # the host gets every failure as one line
                answer = {"error": f"{op}: {type(e).__name__}: {e}"}
            try:
                say(answer)
            except OSError:  # the host went away
                break
        agent.op_kill(list(agent.procs))


def serve(prefix: str) -> None:
    """Listen on PREFIX.sock, then import pyroute2; fork a session for
    each connection (a connection made meanwhile waits for the import)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(prefix + ".sock")
    except OSError:  # another server was started at the same moment: it serves
        return
    listener.listen(16)
    with open(prefix + ".pid.new", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(prefix + ".pid.new", prefix + ".pid")
    os.chdir(os.environ.get("HOME", "/"))
    Pyroute2.born = _born()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # sessions reaped as they end
    Pyroute2.load()
    while True:
        conn, _ = listener.accept()
        Pyroute2.load()
        if os.fork() == 0:
            try:
                listener.close()
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # subprocess waits for its own
                session(conn)
            finally:
                os._exit(0)
        conn.close()


if sys.argv[1:2] == ["--serve"]:
    serve(sys.argv[2])
