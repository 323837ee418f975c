"""The host's programs a guest runs, and the Debian package of each.

The guest's root is the host's, read-only: a program started in the guest
is the host's, installed (or not) on the host. PACKAGES lists the programs
kdk, its tests and labs and the README's examples start in the guest, and
the programs a user of the labs expects there; scripts/install-deps
installs every package named (tests/test_guest_programs.py checks both
against the code and against this host's dpkg database).
"""

from __future__ import annotations

from pathlib import PurePosixPath

SYSTEM_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
COREUTILS = (
    "basename cat cut dd env head id ls mkdir readlink seq sleep stat timeout touch uname wc"
)

PACKAGES: dict[str, str] = {
    **dict.fromkeys(COREUTILS.split(), "coreutils"),
    # kdk's own work in the guest: the guest's sshd, loading and unloading
    # modules, the kernel log, staging files, the agents (python3)
    "sshd": "openssh-server",
    "busybox": "busybox-static",
    "sh": "dash",
    "bash": "bash",  # kdk ssh
    "python3": "python3-minimal",
    "insmod": "kmod",
    "rmmod": "kmod",
    "modprobe": "kmod",
    "modinfo": "kmod",
    "dmesg": "util-linux",
    "mount": "mount",
    "awk": "mawk",
    "tar": "tar",
    "grep": "grep",
    "xargs": "findutils",
    "ps": "procps",
    "pgrep": "procps",
    "sysctl": "procps",
    # networking: the labs, the network driver, and what their users reach for
    "ip": "iproute2",
    "genl": "iproute2",
    "ss": "iproute2",
    "ethtool": "ethtool",
    "iptables": "iptables",
    "ping": "iputils-ping",
    "nc": "netcat-openbsd",
    "tcpdump": "tcpdump",
}


def not_installed(program: str) -> str:
    """One line: `program` (a name, or a path) is missing in the guest, and
    what installs it."""
    path = PurePosixPath(program)
    if "/" in program and str(path.parent) not in SYSTEM_DIRS:
        return f"{program} does not exist in the guest (the guest sees the host's files)"
    package = PACKAGES.get(path.name)
    how = f": apt-get install {package}" if package else ""
    return f"{path.name} is not installed on the host (the guest runs the host's programs){how}"
