"""The ping lab: hand-made echo requests, checked against the kernel that
answers them (its ICMP counters) and against scapy's checksum."""

from __future__ import annotations

import os
import random
import re
import subprocess
from pathlib import Path

import pytest
from scapy.utils import checksum

from kdk.testing.net import Pair
from rawnet.lab import build, counters
from rawnet.ping import ping

HERE = Path(__file__).resolve().parent

COUNT = 3


def test_the_checksum_is_scapys() -> None:
    c_ping = build("ping", "ping")
    rng = random.Random(9)
    for size in (0, 1, 2, 7, 8, 64, 1001):
        data = rng.randbytes(size)
        expected = checksum(data)
        assert ping.checksum(data) == expected, size
        out = subprocess.run([c_ping, "--checksum", data.hex()], capture_output=True, text=True)
        assert out.returncode == 0 and int(out.stdout, 16) == expected, (size, out.stderr)
    # an echo request with its checksum in place sums to zero
    assert ping.checksum(ping.echo_request(0x1234, 1, 56)) == 0


def replies(stdout: str) -> list[int]:
    return [int(m) for m in re.findall(r"^reply from 10\.10\.0\.2: seq=(\d+)", stdout, re.M)]


@pytest.mark.parametrize("program", ["c", "python"])
def test_echo_requests_get_the_kernels_replies(netns_pair: Pair, program: str) -> None:
    argv = [build("ping", "ping")] if program == "c" else ["python3", str(HERE / "ping.py")]
    before = counters(netns_pair.b, "Icmp")
    out = netns_pair.a.check([*argv, "-c", str(COUNT), "-s", "100", netns_pair.b_ip])
    after = counters(netns_pair.b, "Icmp")
    assert replies(out) == list(range(1, COUNT + 1)), out
    assert "bytes=100 " in out
    # the answering kernel took every request (checksum right) and replied to each
    assert after["InEchos"] - before["InEchos"] == COUNT
    assert after["OutEchoReps"] - before["OutEchoReps"] == COUNT
    assert after["InCsumErrors"] == before["InCsumErrors"]


def test_a_wrong_checksum_is_counted_and_not_answered(netns_pair: Pair) -> None:
    before = counters(netns_pair.b, "Icmp")
    r = netns_pair.a.run(
        ["python3", str(HERE / "ping.py"), "--corrupt", "-W", "1", "-c", "2", netns_pair.b_ip]
    )
    after = counters(netns_pair.b, "Icmp")
    assert r.exit_code == 1 and "2 sent, 0 received" in r.stdout.decode()
    assert after["InCsumErrors"] - before["InCsumErrors"] == 2
    assert after["InEchos"] == before["InEchos"] and after["OutEchoReps"] == before["OutEchoReps"]


def test_the_c_program_builds_without_warnings_under_w_extra() -> None:
    os.utime(HERE / "ping.c")  # build again, not "up to date"
    build("ping", "ping")  # -Wall -Wextra -Werror
