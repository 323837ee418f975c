"""Network namespaces in the guest, built with pyroute2 by the net agent.

    with Topology(agent) as t:
        a, b = t.netns("a"), t.netns("b")
        t.veth(a, "veth0", b, "veth0")
        a.addr("veth0", "10.10.0.1/24"); b.addr("veth0", "10.10.0.2/24")
        print(a.run(["ping", "-c1", "10.10.0.2"]).stdout)

The agent (kdk/inguest/net_agent.py) is a server in the guest that imports
pyroute2 once a boot; each NetAgent is a session of it that lives as long
as its SSH channel. Every
namespace gets a unique name (`kdk-<hex>-<role>`); a Topology removes its
namespaces when the block ends, whether the test passed or failed:
processes in them are killed first, and their end waited for.
`NetAgent.clean()` removes namespaces left by a run that was killed
(`kdk net clean`).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import inguest
from ..errors import KdkError, MissingDependency, NetError
from ..guest.programs import not_installed
from ..guest.ssh import Guest, JsonProcess, Result

PREFIX = "kdk-"  # every namespace kdk makes; `kdk net clean` removes them
AGENT = inguest.path("net_agent.py")
AGENT_PYTHON = "/usr/bin/python3 -I -S -u"
START_TIMEOUT = 60.0  # python3 + pyroute2 import under TCG: ~4 s, more on a busy machine
STEP_TIMEOUT = 30.0


class NetAgent:
    """A session of the net agent in the guest, over its own SSH channel.

    The agent is a server that stays up in the guest with pyroute2
    imported (kdk/inguest/net_agent.py), started by the first session of
    a boot; each NetAgent is a session of its own there, forked for it."""

    def __init__(self, guest: Guest) -> None:
        self._guest = guest
        relay = inguest.relay("net", AGENT_PYTHON, AGENT.read_text())
        self._proc: JsonProcess | None = guest.start(["sh", "-c", relay], "the guest's net agent")
        asked = time.monotonic()
        hello = self.call("hello", _timeout=START_TIMEOUT)
        self.pid = int(hello["pid"])
        # where its start went: the wait for the answer (the server's start
        # first in a boot), the server's own start to ready, and of that
        # its import of pyroute2
        self.wait_seconds = time.monotonic() - asked
        self.start_seconds, self.import_seconds = float(hello["ready_s"]), float(hello["import_s"])

    def running(self) -> bool:
        """Not closed, and its channel still open (a guest that stopped
        answering ends the shared ssh connection, and its channels)."""
        return self._proc is not None and self._proc.running()

    def call(self, op: str, _timeout: float = STEP_TIMEOUT, **args: Any) -> dict[str, Any]:
        """One step in the guest; NetError with the guest's reason if it failed,
        MissingDependency naming the package when a program to start is missing."""
        if self._proc is None:
            raise NetError("the net agent was closed")
        try:
            answer = self._proc.ask({"op": op, **args}, _timeout)
        except KdkError:
            self.close()
            raise
        if answer.get("error") == "nc":  # from the relay (kdk.inguest.relay)
            self.close()
            raise MissingDependency(not_installed("nc"))
        if "error" in answer:
            raise NetError(str(answer["error"]))
        if "missing" in answer:
            raise MissingDependency(not_installed(str(answer["missing"])))
        return answer

    def clean(self) -> list[str]:
        """Remove every namespace kdk made (PREFIX); their names."""
        return list(self.call("clean", prefix=PREFIX, _timeout=60)["deleted"])

    def close(self) -> None:
        if self._proc is not None:
            self._proc.close()
            self._proc = None
        self._guest.close()


def clean(guest: Guest) -> list[str]:
    """Remove the namespaces kdk left in the guest (`kdk net clean`)."""
    agent = NetAgent(guest)
    try:
        return agent.clean()
    finally:
        agent.close()


@dataclass(frozen=True)
class Process:
    """A program started in a namespace with `Namespace.spawn`."""

    ns: Namespace
    id: int  # its pid in the guest

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        """Wait until it printed `text` (its ready line); its stdout so far.
        NetError when it ended first or did not print it in time."""
        a = self.ns.agent.call(
            "wait_output", id=self.id, text=text, timeout=timeout, _timeout=timeout + STEP_TIMEOUT
        )
        if not a["found"]:
            how = "ended" if a["ended"] else f"did not print it in {timeout:g} s"
            raise NetError(
                f"waiting for {text!r} in {self.ns.name}: the program {how}; "
                f"stderr: {a['stderr'].strip()[-300:]}"
            )
        return str(a["stdout"])

    def finish(self, timeout: float = 20.0, signal: int = 0) -> Result:
        """Signal it (when `signal`), wait for its end (killed after
        `timeout`); its exit code and output."""
        a = self.ns.agent.call(
            "finish", id=self.id, timeout=timeout, signal=signal, _timeout=timeout + STEP_TIMEOUT
        )
        return Result(int(a["code"]), a["stdout"].encode(), a["stderr"].encode())


@dataclass(frozen=True)
class Namespace:
    """One network namespace in the guest (None as a name: the guest's own)."""

    agent: NetAgent
    name: str | None
    spawned: list[int] = field(default_factory=list)  # ended with the topology

    def run(self, argv: Sequence[str], timeout: float = 30.0, input: str | None = None) -> Result:
        """Run a program in the namespace and wait for it (its /sys is the
        namespace's, as under `ip netns exec`)."""
        a = self.agent.call(
            "run",
            ns=self.name,
            argv=list(argv),
            timeout=timeout,
            input=input,
            _timeout=timeout + STEP_TIMEOUT,
        )
        return Result(int(a["code"]), a["stdout"].encode(), a["stderr"].encode())

    def check(self, argv: Sequence[str], timeout: float = 30.0, input: str | None = None) -> str:
        """Run a program that must succeed (NetError with its stderr); its stdout."""
        r = self.run(argv, timeout, input)
        if not r.ok:
            raise NetError(
                f"{' '.join(argv)} in {self.name} exited {r.exit_code}: "
                f"{r.stderr.decode(errors='replace').strip()[-300:]}"
            )
        return r.stdout.decode()

    def spawn(self, argv: Sequence[str]) -> Process:
        """Start a program in the background (ended with the topology)."""
        proc = Process(self, int(self.agent.call("spawn", ns=self.name, argv=list(argv))["id"]))
        self.spawned.append(proc.id)
        return proc

    def addr(self, ifname: str, cidr: str) -> None:
        address, prefix = cidr.split("/")
        self.agent.call("addr", ns=self.name, ifname=ifname, address=address, prefixlen=int(prefix))

    def up(self, ifname: str, master: str | None = None) -> None:
        """Bring an interface up (enslaved to bridge `master` if given)."""
        attrs: dict[str, Any] = {"state": "up"}
        if master is not None:
            attrs["master"] = master
        self.agent.call("link", ns=self.name, ifname=ifname, **attrs)

    def down(self, ifname: str) -> None:
        self.agent.call("link", ns=self.name, ifname=ifname, state="down")

    def take(self, ifname: str) -> None:
        """Move interface `ifname` of the guest's own namespace (a driver's
        device) into this one. When this one goes, the kernel moves such a
        device back (one made by `ip link add`, like a veth, is deleted)."""
        self.agent.call("take", ns=self.name, ifname=ifname)

    def neighbour(self, ip: str, mac: str, ifname: str) -> None:
        """A permanent neighbour entry: `ip` is at `mac` via `ifname`, so
        no ARP request goes out for it."""
        self.agent.call("neigh", ns=self.name, ifname=ifname, dst=ip, lladdr=mac)

    def route(self, dst: str, gateway: str) -> None:
        self.agent.call("route", ns=self.name, dst=dst, gateway=gateway)

    def links(self) -> dict[str, dict[str, Any]]:
        """Each interface by name: index, address (MAC), state, stats (counters)."""
        return {ln["ifname"]: ln for ln in self.agent.call("links", ns=self.name)["links"]}

    def mac(self, ifname: str) -> str:
        return str(self.links()[ifname]["address"])


class Topology:
    """Namespaces made for one use, removed at the end of the block."""

    def __init__(self, agent: NetAgent) -> None:
        self.agent = agent
        self.tag = secrets.token_hex(3)
        self.namespaces: list[Namespace] = []
        self.spawned: list[int] = []  # programs started through any of its namespaces

    def guest(self) -> Namespace:
        """The guest's own namespace (where eth1, the wire, is); programs
        started there end with the topology too."""
        return Namespace(self.agent, None, self.spawned)

    def netns(self, role: str, ipv6: bool = True) -> Namespace:
        """A new namespace (`lo` up), named kdk-<tag>-<role>. With
        `ipv6=False` its interfaces get no IPv6 (and send no router or
        neighbour solicitations): only a test's own frames go out."""
        ns = Namespace(self.agent, f"{PREFIX}{self.tag}-{role}", self.spawned)
        self.agent.call("netns", name=ns.name, ipv6=ipv6)
        self.namespaces.append(ns)
        return ns

    def veth(self, a: Namespace, a_if: str, b: Namespace, b_if: str) -> None:
        """A veth pair: `a_if` in `a`, `b_if` in `b` (both left down)."""
        self.agent.call("veth", a=[a.name, a_if], b=[b.name, b_if])

    def bridge(self, ns: Namespace, ifname: str = "br0") -> None:
        """A bridge (up) in `ns`."""
        self.agent.call("bridge", ns=ns.name, ifname=ifname)

    def close(self) -> None:
        """End the programs it started and remove its namespaces (every
        process in them killed first)."""
        names = [ns.name for ns in self.namespaces]
        ids, self.spawned[:], self.namespaces = list(self.spawned), [], []
        if self.agent.running():
            self.agent.call("kill", ids=ids)
            if names:
                self.agent.call("delete", names=names, _timeout=60)

    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
