"""nfhook in the guest: rules through the module parameter and sysfs, bad
rules refused, and packets sent with scapy over the wire (host -> the
guest's eth1): exactly the matching ones dropped and counted, the others
counted and received by the guest's sockets."""

from __future__ import annotations

import errno
import json
import os
import select
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from kdk.api import Kdk
from kdk.errors import LoadFailed
from kdk.guest.ssh import Result
from kdk.net.topology import PREFIX
from kdk.net.wire import Wire
from kdk.testing import check_writes, sh

pytestmark = pytest.mark.module("nfhook")

RULES = "/sys/module/nfhook/parameters/rules"
END = 5999  # the port of the last datagram a test sends: "all sent"

# argv[1]: ports to bind on the wire's guest address, the last one END.
# Prints "ready" once bound, then, once a datagram reaches END, what each
# port received (JSON). Frames arrive in order: everything sent before the
# END datagram has been through the hook by then.
RECEIVER = """
import json, select, socket, sys, time
ports = [int(p) for p in sys.argv[1].split(",")]
socks = {}
for port in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("%s", port))
    socks[s] = port
print("ready", flush=True)
got = {port: [] for port in ports}
deadline = time.monotonic() + 60
while not got[ports[-1]] and time.monotonic() < deadline:
    for s in select.select(list(socks), [], [], 1)[0]:
        got[socks[s]].append(s.recv(2048).decode())
for s, port in socks.items():
    s.setblocking(False)
    try:
        while True:
            got[port].append(s.recv(2048).decode())
    except BlockingIOError:
        pass
print(json.dumps(got))
"""


# Over the namespace's loopback: 3 datagrams to 5000, 2 to 5001; what
# each port received.
LOOPBACK = """
import json, socket
socks = {}
for port in (5000, 5001):
    socks[port] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    socks[port].bind(("127.0.0.1", port))
    socks[port].settimeout(0.5)
out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for port in (5000, 5001, 5000, 5001, 5000):
    out.sendto(b"x", ("127.0.0.1", port))
got = {}
for port, s in socks.items():
    got[port] = 0
    try:
        while s.recv(16):
            got[port] += 1
    except TimeoutError:
        pass
print(json.dumps(got))
"""


def counts(vm: Kdk) -> dict[str, int]:
    """/proc/kdk_nfhook: rule -> packets it matched."""
    return {
        rule: int(n)
        for rule, n in (ln.split() for ln in sh(vm, "cat /proc/kdk_nfhook").splitlines())
    }


@contextmanager
def receiving(vm: Kdk, ports: list[int]) -> Iterator[Future[Result]]:
    """A UDP receiver in the guest on ports (+ END), ready when this yields;
    the future gives its output once a datagram to END arrived."""
    r, w = os.pipe()
    script = RECEIVER % "10.9.0.2"
    with (
        os.fdopen(r, "rb", buffering=0) as ready,
        os.fdopen(w, "wb", buffering=0) as out,
        ThreadPoolExecutor(1) as pool,
    ):
        argv = ["python3", "-c", script, ",".join(map(str, [*ports, END]))]
        done = pool.submit(vm.exec, argv, stdout=out, timeout=120)
        assert select.select([ready], [], [], 60)[0], "the guest's receiver did not start"
        assert ready.read(6) == b"ready\n"
        yield done


def udp(w: Wire, port: int, text: str) -> Ether:
    return (
        Ether(src=w.host_mac, dst=w.guest_mac)
        / IP(src=w.host_ip, dst=w.guest_ip)
        / UDP(sport=40000, dport=port)
        / text.encode()
    )


def send_udp(vm: Kdk, ports: list[int], sends: list[tuple[int, str]]) -> dict[int, list[str]]:
    """Each (port, text) as one datagram over the wire, then END; what the
    guest's sockets on ports received."""
    with receiving(vm, ports) as done, vm.wire() as w:
        for port, text in [*sends, (END, "end")]:
            w.send(udp(w, port, text))
        result = done.result(120)
    assert result.ok, result.stderr.decode()
    got = json.loads(result.stdout.decode().splitlines()[-1])
    return {int(p): v for p, v in got.items() if int(p) != END}


def test_load_and_unload_twice_with_rules(vm: Kdk) -> None:
    for _ in range(2):
        log = vm.load("nfhook", ["rules=udp:5000,udp:5001:accept,tcp:8080:drop"]).log
        assert log[-1].text == "nfhook: hooked LOCAL_IN in every network namespace"
        assert sh(vm, f"cat {RULES}") == "udp:5000:drop,udp:5001:accept,tcp:8080:drop\n"
        assert counts(vm) == {"udp:5000:drop": 0, "udp:5001:accept": 0, "tcp:8080:drop": 0}
        assert vm.unload("nfhook").log[-1].text == "nfhook: unloaded"
        assert not vm.exec("test -e /proc/kdk_nfhook").ok
    vm.load("nfhook")
    assert sh(vm, f"cat {RULES}; cat /proc/kdk_nfhook") == "\n"  # no rules
    for bad in ("icmp:1", "udp:0", "udp:65536", "udp:5000:reject", "udp", "udp:5000,"):
        with pytest.raises(LoadFailed):
            vm.load("nfhook", [f"rules={bad}"])


def test_bad_rules_are_refused_and_keep_the_old_ones(loaded: Kdk) -> None:
    sh(loaded, f"echo udp:7 > {RULES}")
    seventeen = ",".join(f"udp:{p}" for p in range(1, 18))
    check_writes(
        loaded,
        [
            (RULES, b"tcp:1:drop,udp:2:accept\n", 24),
            (RULES, b"tcp:1,,udp:2", -errno.EINVAL),
            (RULES, b"sctp:9", -errno.EINVAL),
            (RULES, b"udp:x", -errno.EINVAL),
            (RULES, b"udp:-1", -errno.EINVAL),
            (RULES, b"udp:5:drop:again", -errno.EINVAL),
            (RULES, seventeen.encode(), -errno.E2BIG),
        ],
    )
    assert sh(loaded, f"cat {RULES}") == "tcp:1:drop,udp:2:accept\n"
    sixteen = ",".join(f"udp:{p}" for p in range(1, 17))
    sh(loaded, f"echo {sixteen} > {RULES}")
    assert len(counts(loaded)) == 16
    sh(loaded, f"echo > {RULES}")
    assert counts(loaded) == {}


@pytest.mark.module("nfhook", "rules=udp:5000,udp:5001:accept")
def test_wire_packets_dropped_and_passed_exactly(loaded: Kdk) -> None:
    sends = []
    for i in range(6):  # interleaved: drop-0, pass-0, drop-1, ...
        sends += [(5000, f"drop-{i}")] + ([(5001, f"pass-{i}")] if i < 4 else [])
    got = send_udp(loaded, [5000, 5001, 5002], [*sends, (5002, "no rule")])
    assert got == {
        5000: [],  # dropped before any socket saw them
        5001: [f"pass-{i}" for i in range(4)],
        5002: ["no rule"],
    }
    assert counts(loaded) == {"udp:5000:drop": 6, "udp:5001:accept": 4}
    # New rules: new counters; 5001 now drops, 5000 passes uncounted.
    sh(loaded, f"echo udp:5001 > {RULES}")
    got = send_udp(loaded, [5000, 5001], [(5001, "a"), (5000, "b"), (5001, "c")])
    assert got == {5000: ["b"], 5001: []}
    assert counts(loaded) == {"udp:5001:drop": 2}


@pytest.mark.module("nfhook", "rules=tcp:8080")
def test_a_dropped_syn_gets_no_reset(loaded: Kdk) -> None:
    """A SYN to a closed port is answered with RST/ACK by the guest's TCP;
    dropped by the hook, it never reaches TCP and nothing answers.

    The SYN to 8080 goes first, one to the closed 8081 right after. The
    guest takes frames in order (one receive queue) and its TCP answers a
    SYN as it takes it, so the reset to 8081 is the first frame back: a
    reset to 8080 would have come before it."""
    with loaded.wire() as w:
        syn = Ether() / IP(dst=w.guest_ip) / TCP(sport=41000, flags="S", seq=1000)
        w.drain()
        w.send(_to(syn, 8080))
        w.send(_to(syn, 8081))
        frame = w.receive(timeout=10)
        assert frame is not None, "no reset to the SYN to 8081 in 10 s"
        reset = Ether(frame)
        assert TCP in reset, reset.summary()
        assert (reset[TCP].sport, reset[TCP].dport) == (8081, 41000)
        assert reset[TCP].flags == "RA"
        assert reset[TCP].ack == 1001
    assert counts(loaded) == {"tcp:8080:drop": 1}


def _to(syn: Ether, port: int) -> Ether:
    pkt = syn.copy()
    pkt[TCP].dport = port
    return pkt


@pytest.mark.module("nfhook", "rules=udp:5000")
def test_a_namespace_made_after_the_load_is_hooked_too(loaded: Kdk) -> None:
    ns = f"{PREFIX}{uuid.uuid4().hex[:8]}-nfhook"
    try:
        out = sh(
            loaded,
            f"ip netns add {ns} && ip -n {ns} link set lo up && "
            f"ip netns exec {ns} python3 -c '{LOOPBACK}'",
        )
    finally:
        loaded.exec(f"ip netns del {ns}; true")
    assert json.loads(out) == {"5000": 0, "5001": 2}
    assert counts(loaded) == {"udp:5000:drop": 3}
