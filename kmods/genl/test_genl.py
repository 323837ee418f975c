"""genl in the guest, driven with pyroute2's generic netlink socket (the
guest runs Debian's python3-pyroute2): echo payloads, the counter, and the
errno of each kind of bad request."""

from __future__ import annotations

import errno
import json
import re
from typing import Any

import pytest

from kdk.api import Kdk
from kdk.testing import sh

pytestmark = pytest.mark.module("genl")

# argv[1]: JSON [[cmd, [[attr, value], ...]], ...]; prints one JSON line
# per request: {"MSG": ..., "VALUE": ...} from the reply, or {"errno": N}.
# The attribute numbers are genl_uapi.h's; 9 is one the family lacks.
CLIENT = """
import json, sys
from pyroute2.netlink import NLM_F_REQUEST, genlmsg
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.generic import GenericNetlinkSocket

class kdkmsg(genlmsg):
    nla_map = ((1, "MSG", "asciiz"), (2, "ADD", "uint32"),
               (3, "VALUE", "uint64"), (9, "BOGUS", "uint32"))

sock = GenericNetlinkSocket()
try:
    sock.bind("kdk_genl", kdkmsg)
except NetlinkError as e:
    print(json.dumps({"bind_errno": e.code}))
    sys.exit()
for cmd, attrs in json.loads(sys.argv[1]):
    msg = kdkmsg()
    msg["cmd"], msg["version"], msg["attrs"] = cmd, 1, attrs
    try:
        reply = sock.nlm_request(msg, msg_type=sock.prid, msg_flags=NLM_F_REQUEST)
    except NetlinkError as e:
        print(json.dumps({"errno": e.code}))
        continue
    print(json.dumps({name: reply[0].get_attr(name) for name in ("MSG", "VALUE")
                      if reply[0].get_attr(name) is not None}))
sock.close()
"""

ECHO, COUNTER = 1, 2


def requests(vm: Kdk, reqs: list[tuple[int, list[tuple[str, Any]]]]) -> list[dict[str, Any]]:
    out = sh(vm, ["python3", "-c", CLIENT, json.dumps(reqs)])
    return [json.loads(line) for line in out.splitlines()]


def test_load_and_unload_twice(vm: Kdk) -> None:
    for _ in range(2):
        log = vm.load("genl").log
        assert log[-1].text.startswith("genl: family kdk_genl registered, id ")
        family = sh(vm, "genl ctrl get name kdk_genl")
        assert "Name: kdk_genl" in family
        assert "Version: 0x1" in family
        assert "max attribs: 4" in family
        assert re.findall(r"#\d+:\s+ID-(0x\d+)", family) == ["0x1", "0x2"]  # the commands
        assert requests(vm, [(COUNTER, [("ADD", 7)])]) == [{"VALUE": 7}]  # afresh each load
        assert vm.unload("genl").log[-1].text == "genl: unloaded"
        assert not vm.exec("genl ctrl get name kdk_genl").ok
    assert requests(vm, []) == [{"bind_errno": errno.ENOENT}]


def test_echo_returns_the_payload(loaded: Kdk) -> None:
    payloads = ["hello, kernel", "", "x" * 255, "tab\tand spaces  "]
    got = requests(loaded, [(ECHO, [("MSG", p)]) for p in payloads])
    assert got == [{"MSG": p} for p in payloads]


def test_counter_adds_and_reads(loaded: Kdk) -> None:
    got = requests(
        loaded,
        [
            (COUNTER, []),
            (COUNTER, [("ADD", 5)]),
            (COUNTER, [("ADD", 1000)]),
            (COUNTER, [("ADD", 1)]),
            (COUNTER, []),
        ],
    )
    assert got == [{"VALUE": v} for v in (0, 5, 1005, 1006, 1006)]


def test_bad_requests_get_an_errno_and_change_nothing(loaded: Kdk) -> None:
    got = requests(
        loaded,
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
