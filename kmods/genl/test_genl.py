"""genl in the guest, driven with pyroute2's generic netlink socket (the
guest runs Debian's python3-pyroute2): echo payloads, the counter, and the
errno of each kind of bad request."""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from typing import Any

import pytest

from kdk.api import Kdk
from kdk.guest.ssh import JsonProcess
from kdk.testing import sh
from kdk.testing.keep import PerBoot

pytestmark = pytest.mark.module("genl")

# One python3 in the guest for the whole module: pyroute2's import takes
# seconds under emulation, so it is paid once, not for every batch. Each
# input line is a batch, JSON [[cmd, [[attr, value], ...]], ...], sent on
# a socket bound afresh (a reload registers the family under a new id);
# the answer is one JSON line: {"bind_errno": N}, or {"replies": [...]}
# with {"MSG": ..., "VALUE": ...} from each reply, or {"errno": N}.
# The attribute numbers are genl_uapi.h's; 9 is one the family lacks.
CLIENT = """
import json, sys
from pyroute2.netlink import NLM_F_REQUEST, genlmsg
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import GenericNetlinkSocket

class kdkmsg(genlmsg):
    nla_map = ((1, "MSG", "asciiz"), (2, "ADD", "uint32"),
               (3, "VALUE", "uint64"), (9, "BOGUS", "uint32"))

def batch(sock, reqs):
    for cmd, attrs in reqs:
        msg = kdkmsg()
        msg["cmd"], msg["version"], msg["attrs"] = cmd, 1, attrs
        try:
            reply = sock.nlm_request(msg, msg_type=sock.prid, msg_flags=NLM_F_REQUEST)
        except NetlinkError as e:
            yield {"errno": e.code}
            continue
        yield {name: reply[0].get_attr(name) for name in ("MSG", "VALUE")
               if reply[0].get_attr(name) is not None}

for line in sys.stdin:
    sock = GenericNetlinkSocket()
    try:
        sock.bind("kdk_genl", kdkmsg)
        answer = {"replies": list(batch(sock, json.loads(line)))}
    except NetlinkError as e:
        answer = {"bind_errno": e.code}
    finally:
        sock.close()
    print(json.dumps(answer), flush=True)
"""

ECHO, COUNTER = 1, 2
Requests = list[tuple[int, list[tuple[str, Any]]]]


Client = PerBoot[JsonProcess]  # the module's client in the guest, one per boot


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    c = PerBoot(lambda vm: vm.guest().start(["python3", "-c", CLIENT], "the genl client"))
    yield c
    c.close()


def answer(vm: Kdk, client: Client, reqs: Requests) -> dict[str, Any]:
    """The client's answer to one batch."""
    return client.get(vm).ask(reqs, timeout=120)  # the first answer waits for the import


def requests(vm: Kdk, client: Client, reqs: Requests) -> list[dict[str, Any]]:
    """The replies to one batch (the family bound)."""
    got = answer(vm, client, reqs)
    assert "replies" in got, got
    return list(got["replies"])


def test_load_and_unload_twice(vm: Kdk, client: Client) -> None:
    for _ in range(2):
        log = vm.load("genl").log
        assert log[-1].text.startswith("genl: family kdk_genl registered, id ")
        family = sh(vm, "genl ctrl get name kdk_genl")
        assert "Name: kdk_genl" in family
        assert "Version: 0x1" in family
        assert "max attribs: 4" in family
        assert re.findall(r"#\d+:\s+ID-(0x\d+)", family) == ["0x1", "0x2"]  # the commands
        assert requests(vm, client, [(COUNTER, [("ADD", 7)])]) == [{"VALUE": 7}]  # afresh each load
        assert vm.unload("genl").log[-1].text == "genl: unloaded"
        assert not vm.exec("genl ctrl get name kdk_genl").ok
    assert answer(vm, client, []) == {"bind_errno": errno.ENOENT}


def test_echo_returns_the_payload(loaded: Kdk, client: Client) -> None:
    payloads = ["hello, kernel", "", "x" * 255, "tab\tand spaces  "]
    got = requests(loaded, client, [(ECHO, [("MSG", p)]) for p in payloads])
    assert got == [{"MSG": p} for p in payloads]


def test_counter_adds_and_reads(loaded: Kdk, client: Client) -> None:
    got = requests(
        loaded,
        client,
        [
            (COUNTER, []),
            (COUNTER, [("ADD", 5)]),
            (COUNTER, [("ADD", 1000)]),
            (COUNTER, [("ADD", 1)]),
            (COUNTER, []),
        ],
    )
    assert got == [{"VALUE": v} for v in (0, 5, 1005, 1006, 1006)]


def test_bad_requests_get_an_errno_and_change_nothing(loaded: Kdk, client: Client) -> None:
    got = requests(
        loaded,
        client,
        [
            (ECHO, []),  # MSG is required
            (ECHO, [("MSG", "x" * 256)]),  # longer than 255
            (COUNTER, [("ADD", 0)]),  # below the policy's range
            (COUNTER, [("ADD", 1001)]),  # above it
            (COUNTER, [("VALUE", 3)]),  # a reply-only attribute
            (COUNTER, [("BOGUS", 1)]),  # not in the family (strict)
            (7, []),  # no such command
            (COUNTER, []),
        ],
    )
    assert got == [
        {"errno": errno.EINVAL},
        {"errno": errno.EINVAL},
        {"errno": errno.ERANGE},
        {"errno": errno.ERANGE},
        {"errno": errno.EINVAL},
        {"errno": errno.EINVAL},
        {"errno": errno.EOPNOTSUPP},
        {"VALUE": 0},
    ]
