"""The wire's socket paths and addresses, without a VM."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from kdk.vm import link


def test_sockets_stay_in_the_state_folder_when_their_paths_fit() -> None:
    state = Path("/p/.kdk/vms/default")
    assert link.wire_dir(state) == state


def test_a_deep_state_folder_gets_a_short_socket_folder_of_its_own() -> None:
    deep = Path("/home/someone/" + "a-rather-long-folder-name/" * 5 + ".kdk/vms/default")
    a, b = link.wire_dir(deep), link.wire_dir(deep.with_name("other"))
    assert a != b  # one per VM
    assert len(str(a / link.HOST_SOCKET)) <= link.MAX_PATH
    assert len(str(a / link.GUEST_SOCKET)) <= link.MAX_PATH


def test_the_guest_reads_every_address_from_the_command_line() -> None:
    word = link.WIRE.cmdline()
    mac, ip, host_mac, host_ip = word.removeprefix("kdk.wire=").split(",")
    assert (mac, ip) == (link.WIRE.guest_mac, f"{link.WIRE.guest_ip}/{link.WIRE.prefix}")
    assert (host_mac, host_ip) == (link.WIRE.host_mac, link.WIRE.host_ip)
    assert int(host_mac.split(":")[0], 16) & 2  # locally administered: no vendor's


def test_qemu_gets_the_guest_mac_and_both_socket_paths() -> None:
    state = Path("/p/.kdk/vms/default")
    args = link.qemu_netdev(state)
    assert f"local.path={state / link.GUEST_SOCKET}," in args[1]
    assert f"remote.path={state / link.HOST_SOCKET}" in args[1]
    assert f"mac={link.WIRE.guest_mac}" in args[3]


def test_without_scapy_the_wire_names_the_package() -> None:
    code = (
        "import sys; sys.modules['scapy'] = None\n"
        "from kdk.api import Kdk\nfrom kdk.errors import MissingDependency\n"
        "try:\n    Kdk().wire()\nexcept MissingDependency as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.startswith("the wire needs scapy: pip install 'scapy"), out.stderr
