"""The tcp_handshake lab: segments made by hand against real listening
sockets; what the listener's socket received is the check."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.errors import NetError
from kdk.net.topology import Namespace, Process, Topology
from kdk.net.wire import Wire
from kdk.testing.net import Pair
from rawnet.lab import counters, require_config
from rawnet.tcp_handshake.handshake import Connection, probe

HERE = Path(__file__).resolve().parent
PORT = 7777
# accepts one connection (or none within 60 s), prints its peer and what it
# received up to EOF, answers with the byte count, and closes
SERVER = f"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", {PORT})); s.listen(); s.settimeout(60)
print("listening", flush=True)
try:
    c, peer = s.accept()
except socket.timeout:
    raise SystemExit("no connection")
print("peer", *peer, flush=True)
data = b""
while chunk := c.recv(4096):
    data += chunk
print("data", data.hex())
c.sendall(b"got %d bytes" % len(data)); c.close()
"""


def test_handshake_data_and_fin_by_hand(net: Topology, wire: Wire) -> None:
    server = net.guest().spawn(["python3", "-c", SERVER])  # the guest's own
    server.wait_for("listening")
    conn = Connection(wire, PORT)
    message = b"hello from hand-made segments"
    conn.open()
    conn.send(message)
    answer = conn.close()  # our FIN ends the server's reads; it answers and closes
    out = server.finish(timeout=10).stdout.decode().split("\n")
    assert out[1] == f"peer {wire.host_ip} {conn.sport}"
    assert out[2] == f"data {message.hex()}"
    assert answer == f"got {len(message)} bytes".encode()
    assert conn.peer_closed and [ln[:5] for ln in conn.log].count("> S  ") == 1


def test_a_closed_port_answers_rst_an_open_one_syn_ack(wire: Wire) -> None:
    assert probe(wire, 9) == "RA"
    assert probe(wire, 22) == "SA"


def test_the_senders_own_kernel_resets_unless_a_firewall_stops_it(
    vm: Kdk, netns_pair: Pair
) -> None:
    require_config(vm, "CONFIG_NETFILTER", "CONFIG_IP_NF_IPTABLES", "CONFIG_IP_NF_FILTER")
    a, b = netns_pair.a, netns_pair.b
    client = ["python3", str(HERE / "ns_handshake.py"), netns_pair.b_ip, str(PORT)]

    def attempt() -> tuple[bool, int]:
        """(whether the listener accepted, RSTs a's kernel sent). The
        attempt is over when the listener accepted, or b's kernel reset
        scapy's ACK (its handshake was dropped at a's RST): no time waited out."""
        before, b_before = _out_rsts(a), _out_rsts(b)
        server = b.spawn(["python3", "-c", SERVER])
        server.wait_for("listening")
        assert "ack sent" in a.check(client, timeout=120)  # scapy's import: seconds
        deadline = time.monotonic() + 10
        while not _printed(server, "peer") and _out_rsts(b) == b_before:
            assert time.monotonic() < deadline, "neither accepted nor reset in 10 s"
        accepted = "\npeer " in server.finish(timeout=0).stdout.decode()
        return accepted, _out_rsts(a) - before

    accepted, rsts = attempt()
    assert not accepted and rsts >= 1  # a's kernel reset what it never opened
    a.check(["iptables", "-A", "OUTPUT", "-p", "tcp", "--tcp-flags", "RST", "RST", "-j", "DROP"])
    accepted, _ = attempt()
    assert accepted


def _out_rsts(ns: Namespace) -> int:
    return counters(ns, "Tcp")["OutRsts"]


def _printed(proc: Process, text: str) -> bool:
    """Whether `proc` printed `text` (within a tenth of a second)."""
    try:
        proc.wait_for(text, timeout=0.1)
    except NetError:
        return False
    return True


@pytest.fixture(autouse=True)
def _quiet_wire_first(request: pytest.FixtureRequest) -> None:
    """Frames from an earlier test (a retransmitted SYN/ACK) are not ours."""
    if "wire" in request.fixturenames:
        request.getfixturevalue("wire").drain()
