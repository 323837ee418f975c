"""kdk's installer gets the guest's sshd without a new service on the host.

scripts/install-sshd (which scripts/install-deps runs) is run where
openssh-server is not installed yet, and nothing keeps services from
starting: a minimal Debian root (mmdebstrap, the host's suites, cached
under ~/.cache/kdk/) with no policy-rc.d, in new mount, network and pid
namespaces, so that a daemon it started would listen in a network
namespace of its own, seen by `ss`, and end with the namespace. The root
plays a booted host (`runlevel` says 5) whose init starts SysV scripts,
as invoke-rc.d does in a package's postinst; on a systemd host
deb-systemd-invoke starts it, and obeys the same policy-rc.d.

Three runs on fresh copies of that root (an overlay on the cached one):
a plain `apt-get install openssh-server` (sshd listens, the unit is
enabled: what the test must catch), install-sshd (nothing listens, the
units are disabled, no policy-rc.d is left behind), and install-sshd
under a policy-rc.d of the host's own, which it leaves as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from kdk.vm.box import host_sources, host_suite

from .conftest import PROJECT

SCRIPT = PROJECT / "scripts" / "install-sshd"
BUILD_TIMEOUT = 900
RUN_TIMEOUT = 300
# The root: minimal, with an init system (systemd-sysv: /sbin/init, systemctl)
# and openssh-server's packages downloaded, not installed (the namespaces
# have no network).
MMDEBSTRAP = [
    "mmdebstrap",
    "--variant=minbase",
    "--include=systemd-sysv",
    "--skip=cleanup/apt/lists",
    "--skip=cleanup/apt/cache",
    '--customize-hook=chroot "$1" apt-get clean',
    '--customize-hook=chroot "$1" apt-get install --download-only -y -q '
    "--no-install-recommends openssh-server",
]
# Run by bash in the new namespaces: an overlay of the cached root on a
# tmpfs, `runlevel` answering 5, then $3 in it; prints what listens before
# and after, the units' state, the rc5.d link, the policy-rc.d left, and
# what install-sshd and invoke-rc.d (a start refused) said.
IN_NAMESPACES = r"""
set -eu
root=$1 work=$2 command=$3
mount -t tmpfs tmpfs "$work"
mkdir "$work/upper" "$work/work" "$work/root"
mount -t overlay overlay -o "lowerdir=$root,upperdir=$work/upper,workdir=$work/work" "$work/root"
r=$work/root
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
cp /dev/stdin "$r/install-sshd"
chmod 755 "$r/install-sshd"
echo "before: $(ss -ltnH | awk '{print $4}' | sort | xargs)"
chroot "$r" sh -c 'rm -f /usr/sbin/runlevel && printf "#!/bin/sh\necho N 5\n" >/usr/sbin/runlevel &&
	chmod 755 /usr/sbin/runlevel'
DEBIAN_FRONTEND=noninteractive chroot "$r" sh -c "$command" >"$work/log" 2>&1 ||
	{ tail -n 20 "$work/log"; exit 1; }
echo "after: $(ss -ltnH | awk '{print $4}' | sort | xargs)"
echo "units: $(chroot "$r" systemctl is-enabled ssh.service ssh.socket | xargs)"
echo "rc5.d: $(cd "$r/etc/rc5.d" && ls -- *ssh)"
echo "policy-rc.d: $(cat "$r/usr/sbin/policy-rc.d" 2>/dev/null | md5sum | cut -c1-8)"
grep -e '^install-sshd: ' -e '^invoke-rc.d: ' "$work/log" || true
"""
NONE = hashlib.md5(b"").hexdigest()[:8]  # no policy-rc.d


def cached_root() -> Path:
    """The minimal root, built once per suite and sources."""
    suite, sources = host_suite(), host_sources()
    key = hashlib.sha256(repr([MMDEBSTRAP, suite, sources]).encode()).hexdigest()[:16]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kdk"
    root = base / "sshd-root" / key
    if not root.is_dir():
        root.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root.parent))
        try:
            subprocess.run(
                [*MMDEBSTRAP, suite, str(tmp / "root"), *sources],
                check=True,
                capture_output=True,
                timeout=BUILD_TIMEOUT,
            )
            (tmp / "root").replace(root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def in_fresh_host(root: Path, command: str, work: Path) -> dict[str, str]:
    """`command` run in a fresh copy of `root`, in namespaces of its own;
    what IN_NAMESPACES printed, by label."""
    work.mkdir()
    argv = [
        "unshare",
        "--mount",
        "--net",
        "--pid",
        "--fork",
        "--mount-proc",
        "--propagation",
        "private",
        "bash",
        "-c",
        IN_NAMESPACES,
        "-",
        str(root),
        str(work),
        command,
    ]
    r = subprocess.run(
        argv, stdin=SCRIPT.open("rb"), capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert r.returncode == 0, r.stdout + r.stderr
    said: dict[str, str] = {}
    for line in r.stdout.splitlines():
        label, _, value = line.partition(": ")
        said[label] = (said[label] + "\n" + value) if label in said else value
    return said


@pytest.mark.chroot
@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mmdebstrap") is None,
    reason="needs root and mmdebstrap (scripts/install-vagrant)",
)
def test_install_sshd_leaves_no_new_service(tmp_path: Path) -> None:
    root = cached_root()
    plain = in_fresh_host(
        root, "apt-get install -y -q --no-install-recommends openssh-server", tmp_path / "plain"
    )
    assert plain["before"] == ""
    assert plain["after"] == "0.0.0.0:22 [::]:22"  # a plain install starts sshd: the test sees it
    assert plain["units"] == "enabled disabled"
    assert "invoke-rc.d" not in plain  # it started ssh, unasked

    ours = in_fresh_host(root, "/install-sshd --no-update", tmp_path / "ours")
    assert ours.get("invoke-rc.d") == "policy-rc.d denied execution of start."  # never started
    assert ours["before"] == ours["after"] == ""  # nothing new listens
    assert ours["units"] == "disabled disabled"  # nor starts at boot
    assert ours["rc5.d"] == "K01ssh"
    assert ours["policy-rc.d"] == NONE  # kdk's own is gone
    assert ours["install-sshd"].endswith(
        "is left disabled and stopped (`systemctl enable --now ssh` would turn it on)"
    )

    docker_like = "printf '#!/bin/sh\\nexit 101\\n' >/usr/sbin/policy-rc.d && chmod 755 "
    docker_like += "/usr/sbin/policy-rc.d"
    theirs = in_fresh_host(root, docker_like + " && /install-sshd --no-update", tmp_path / "theirs")
    assert theirs.get("invoke-rc.d") == "policy-rc.d denied execution of start."
    assert theirs["after"] == "" and theirs["units"] == "disabled disabled"
    assert theirs["policy-rc.d"] == hashlib.md5(b"#!/bin/sh\nexit 101\n").hexdigest()[:8]


def test_the_readme_no_longer_asks_to_disable_the_hosts_sshd() -> None:
    readme = (PROJECT / "README.md").read_text()
    assert "systemctl disable --now ssh" not in readme
