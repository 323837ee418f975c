"""What the labs' tests share: their C programs built on the host, the
guest kernel's options, and the kernel's own counters.

The guest sees the project folder at the same path and runs the host's
userland, so a program built here runs there as it is.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.net.topology import Namespace

LABS = Path(__file__).resolve().parent
STRICT = "CFLAGS=-O2 -Wall -Wextra -Werror"  # a lab's C builds without a warning


def build(lab: str, program: str) -> str:
    """Build rawnet/<lab>/<program> from its C source with the lab's
    Makefile (warnings are errors); its path, for the guest too."""
    r = subprocess.run(
        ["make", "-s", "-C", str(LABS / lab), STRICT, program],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"building {lab}/{program} failed:\n{r.stdout}{r.stderr}"
    return str(LABS / lab / program)


def require_config(vm: Kdk, *options: str) -> None:
    """Skip the test, naming what is missing, unless the guest kernel was
    built with every one of `options` (built in or as a module)."""
    release = str(vm.status()["kernel"])
    config = Path(f"/boot/config-{release}")
    try:
        text = config.read_text()
    except OSError:
        pytest.skip(f"cannot read {config} to check {', '.join(options)}")
    have = {ln.split("=")[0] for ln in text.splitlines() if ln.endswith(("=y", "=m"))}
    missing = [o for o in options if o not in have]
    if missing:
        pytest.skip(f"the guest kernel {release} lacks {', '.join(missing)}")


def counters(ns: Namespace, group: str, table: str = "snmp") -> dict[str, int]:
    """One group ("Icmp", "Ip", "Udp", "IpExt", "TcpExt") of the
    namespace's /proc/net/<table> ("snmp" or "netstat"): name -> value."""
    lines = [ln.split() for ln in ns.check(["cat", f"/proc/net/{table}"]).splitlines()]
    names, values = [ln for ln in lines if ln and ln[0] == f"{group}:"][:2]
    return {k: int(v) for k, v in zip(names[1:], values[1:], strict=True)}
