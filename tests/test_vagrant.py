"""The Vagrant path, for real: kdk's box built here, libvirt in kdk's own
network namespace, the repository's Vagrantfile under plain `vagrant`, and
the `kdk` commands on the Vagrant backend (load, exec, a crash and the VM
coming back, down --destroy), then on a libvirt of the user's own. The
host's links, routes and firewall rules must be the same after all of it.

The tests run in this order, one libvirtd at a time: every libvirtd for
qemu:///system answers on the same socket (/run/libvirt/libvirt-sock is the
host's path, whatever the network namespace).

Needs root and the packages of scripts/install-vagrant (`make test` installs
them). The VM is `$KDK_VM-vagrant` (default `pytest-vagrant`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.errors import KdkError
from kdk.state import DEFAULT_CPUS, DEFAULT_MEMORY_MB, process_alive
from kdk.vm import box as boxes
from kdk.vm.backend import BootRequest
from kdk.vm.libvirt import (
    DAEMONS,
    KDK,
    LIBVIRT_SOCK,
    NETNS,
    RUN,
    SYSTEM_URI,
    Libvirt,
    LibvirtAt,
    answers,
    parse_libvirt,
    read_pid,
    remember,
    remembered,
    start_confined,
    stop_confined,
)
from kdk.vm.qemu import QemuBackend
from kdk.vm.vagrant import VAGRANTFILE, VagrantBackend, parse_ssh_config

DATA = Path(__file__).parent / "data"
REPO = VAGRANTFILE.parent
VM = (os.environ.get("KDK_VM") or "pytest") + "-vagrant"

needs = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("vagrant") is None or shutil.which("libvirtd") is None,
    reason="needs root, vagrant, vagrant-libvirt and libvirt (scripts/install-vagrant)",
)


def real(test: Callable[..., None]) -> Callable[..., None]:
    """A test on real Vagrant and libvirt guests (marked `vm`, like kdk's other VM tests)."""
    marked: Callable[..., None] = pytest.mark.vm(needs(test))
    return marked


# -- pure --------------------------------------------------------------------
def test_box_sources_are_the_hosts_default_debian_suites() -> None:
    got = boxes.parse_policy((DATA / "apt-cache-policy.txt").read_text())
    assert got == [
        "deb http://deb.debian.org/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",
        "deb http://deb.debian.org/debian-security bookworm-security main",
    ]  # backports (pin 1) left out: the box's kernel is the release's, like the host's


def test_box_cache_key_follows_recipe_and_sources(tmp_path: Path) -> None:
    (tmp_path / "build").write_text("#!/bin/sh\n")
    one = boxes.cache_key(tmp_path, "bookworm", ["deb http://a bookworm main"])
    assert one == boxes.cache_key(tmp_path, "bookworm", ["deb http://a bookworm main"])
    assert one != boxes.cache_key(tmp_path, "bookworm", ["deb http://a bookworm-updates main"])
    (tmp_path / "packages").write_text("kmod\n")
    assert one != boxes.cache_key(tmp_path, "bookworm", ["deb http://a bookworm main"])


def test_ssh_config_parsed() -> None:
    opts = parse_ssh_config((DATA / "vagrant-ssh-config.txt").read_text())
    assert opts["hostname"].startswith("192.168.121.")
    assert opts["port"] == "22"
    assert opts["identityfile"].endswith("/vagrant_key")


@pytest.mark.parametrize(
    ("req", "named"),
    [
        (BootRequest(accel="kvm"), "--accel kvm"),
        (BootRequest(ssh_port=2222), "--ssh-port"),
        (BootRequest(debug=True), "--debug"),
        (BootRequest(devices=("edu",)), "--device and --can are"),
        (BootRequest(cpus=1), "--cpus is"),
        (BootRequest(memory_mb=512), "--memory is"),
    ],
)
def test_what_a_vagrant_guest_cannot_honour_is_refused_first(
    tmp_path: Path, req: BootRequest, named: str
) -> None:
    backend = VagrantBackend(tmp_path, tmp_path / ".kdk")
    with pytest.raises(KdkError, match=f"^{re.escape(named)} (is )?for the QEMU backend"):
        backend.up(req, print, print)
    assert not (tmp_path / ".kdk" / "vms" / "default" / "vagrant").exists()  # nothing started


def test_the_vagrantfiles_machine_is_the_one_kdk_says_it_is(tmp_path: Path) -> None:
    """The Vagrantfile's machine is kdk's default one, which the refusal
    of --cpus and --memory names."""
    text = VAGRANTFILE.read_text()
    assert re.findall(r"^ *libvirt\.cpus = (\d+)$", text, re.M) == [str(DEFAULT_CPUS)]
    assert re.findall(r"^ *libvirt\.memory = (\d+)$", text, re.M) == [str(DEFAULT_MEMORY_MB)]
    with pytest.raises(
        KdkError, match=f"\\({DEFAULT_CPUS} CPUs, {DEFAULT_MEMORY_MB} MiB, no devices"
    ):
        VagrantBackend(tmp_path, tmp_path / ".kdk").up(BootRequest(cpus=1), print, print)


@pytest.mark.parametrize(
    ("text", "at"),
    [
        ("kdk", KDK),
        ("qemu:///system", LibvirtAt(SYSTEM_URI, None, kdk_owned=False)),
        ("qemu:///system,netns=theirs", LibvirtAt(SYSTEM_URI, "theirs", kdk_owned=False)),
        (
            "qemu:///system?socket=/run/x/sock",
            LibvirtAt("qemu:///system?socket=/run/x/sock", None, kdk_owned=False),
        ),
    ],
)
def test_libvirt_choice_parsed_and_remembered(tmp_path: Path, text: str, at: LibvirtAt) -> None:
    assert parse_libvirt(text) == at
    assert str(at) == text
    remember(tmp_path, at)
    assert remembered(tmp_path) == at
    remember(tmp_path, KDK)  # back to kdk's own: nothing left to remember
    assert remembered(tmp_path) == KDK
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "text",
    [
        "qemu+ssh://box/system",
        "qemu:///session",
        "mine",
        "qemu:///system,netns=",
        "qemu:///system,netns=a,b",
    ],
)
def test_libvirt_choice_refused_in_one_line(text: str) -> None:
    with pytest.raises(KdkError, match=f"^--libvirt {re.escape(text)}: "):
        parse_libvirt(text)


def test_libvirt_choice_is_for_vagrant_and_kept_while_a_machine_exists(tmp_path: Path) -> None:
    with pytest.raises(KdkError, match=r"^--libvirt is for the vagrant backend"):
        QemuBackend(tmp_path, tmp_path / ".kdk").up(BootRequest(libvirt="kdk"), print, print)
    backend = VagrantBackend(tmp_path, tmp_path / ".kdk")
    (backend.state.path / "vagrant").mkdir(parents=True)  # a machine, maybe defined in kdk's
    with pytest.raises(KdkError, match="in the libvirt kdk: `kdk down --destroy` it before"):
        backend.up(BootRequest(libvirt=SYSTEM_URI), print, print)
    assert remembered(backend.state.path) == KDK


# -- real --------------------------------------------------------------------
def host_network() -> dict[str, str]:
    """The host's links, addresses, routes, rules and firewall rules (packet
    counters left out: they change with any traffic)."""
    cmds = {
        "links": ["ip", "-d", "link", "show"],
        "addresses": ["ip", "addr", "show"],
        "routes": ["ip", "route", "show", "table", "all"],
        "routes6": ["ip", "-6", "route", "show", "table", "all"],
        "rules": ["ip", "rule", "show"],
        "iptables": ["iptables-save"],
        "ip6tables": ["ip6tables-save"],
        "nft": ["nft", "list", "ruleset"],
        "netns": ["ip", "netns", "list"],
    }
    got = {}
    for name, argv in cmds.items():
        if shutil.which(argv[0]) is None:
            continue
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout
        out = re.sub(r"^#.*\n", "", out, flags=re.M)  # iptables-save's dated comments
        out = re.sub(r"\[\d+:\d+\]", "", out)
        out = re.sub(r"valid_lft \S+ preferred_lft \S+", "", out)
        got[name] = out
    got["netns"] = "\n".join(ln for ln in got.get("netns", "").splitlines() if NETNS not in ln)
    return got


@pytest.fixture(scope="module")
def host_net() -> Iterator[dict[str, str]]:
    before = host_network()
    yield before
    # Whatever happened, kdk's namespace and daemons are gone at the end
    # (unless a VM of someone else's is defined there).
    Libvirt().stop_if_idle()


def kdk(*args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KDK_VM": VM, **env}
    return subprocess.run(
        [sys.executable, "-m", "kdk.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


@real
def test_box_build_says_where_it_is_cached(host_net: dict[str, str]) -> None:
    res = kdk("box", "build")
    assert res.returncode == 0, res.stderr
    box, built = boxes.find_box()
    assert built
    assert str(box.path) in res.stderr
    assert box.name in (REPO / ".kdk" / "box.json").read_text()


@real
def test_plain_vagrant_up_with_the_repository_vagrantfile(
    host_net: dict[str, str], tmp_path: Path
) -> None:
    """What a Vagrant user does: `vagrant up`, `vagrant ssh -c`, `vagrant
    destroy`, with the repository's Vagrantfile (in kdk's namespace, whose
    libvirt kdk starts; a pool of the test's own)."""
    libvirt = Libvirt()
    libvirt.ensure(print)
    pool = "kdk-test-plain"
    if libvirt.domain_xml("kdk-test-plain-default") is not None:  # a killed run's
        libvirt.remove_domain("kdk-test-plain-default")
    libvirt.remove_pool(pool)  # a killed run's, whose folder was another tmp_path
    libvirt.ensure_pool(pool, tmp_path / "pool")
    env = dict(
        os.environ,
        VAGRANT_CWD=str(REPO),
        VAGRANT_DOTFILE_PATH=str(tmp_path / "machine"),
        KDK_POOL=pool,
        KDK_DOMAIN_PREFIX="kdk-test-plain-",
        KDK_CONSOLE_LOG=str(tmp_path / "console.log"),
    )

    def vagrant(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", NETNS, "vagrant", *args, "--no-tty"],
            capture_output=True,
            text=True,
            timeout=900,
            env=env,
        )

    try:
        up = vagrant("up")
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr
        ssh = vagrant("ssh", "-c", f"uname -r; ls {REPO}/Vagrantfile; sudo id -u")
        assert ssh.returncode == 0, ssh.stderr
        release, listed, uid = ssh.stdout.split()
        assert re.fullmatch(r"\d+\.\d+\.\d+-\d+-amd64", release)
        assert listed == f"{REPO}/Vagrantfile"  # the project, shared over 9p at its path
        assert uid == "0"
        assert "Linux version" in (tmp_path / "console.log").read_text(errors="replace")
    finally:
        vagrant("destroy", "-f")
        libvirt.remove_pool(pool)
    assert "kdk-test-plain-default" not in libvirt.virsh("list", "--all", "--name")


@real
def test_kdk_on_the_vagrant_backend(host_net: dict[str, str], tmp_path: Path) -> None:
    # A domain of this VM's name left by a kdk killed mid-`up` in a project
    # deleted since: removed by this up, which makes its own.
    domain = f"kdk-{VM}-default"
    libvirt = Libvirt()
    libvirt.ensure(print)
    (tmp_path / "domain.xml").write_text(orphan(domain, tmp_path / "gone" / "console.log"))
    libvirt.virsh("define", str(tmp_path / "domain.xml"))
    up = kdk("up", "--backend", "vagrant")
    try:
        assert up.returncode == 0, up.stderr
        xml = libvirt.domain_xml(domain)
        console = VagrantBackend(REPO, REPO / ".kdk", VM).state.console_log
        assert xml is not None and str(console) in xml  # the new domain, made for this VM
        status = kdk("status", "--json")
        assert '"backend": "vagrant"' in status.stdout and '"libvirt": "kdk"' in status.stdout

        load = kdk("load", "hello")
        assert load.returncode == 0, load.stderr
        assert "hello: hello, world" in load.stdout

        # Built in the guest with its own headers (forced: this host has them
        # too), into the shared project folder; the .ko is checked and loaded.
        folder = REPO / ".kdk" / "test-guest-build" / "hello"
        shutil.rmtree(folder.parent, ignore_errors=True)
        folder.mkdir(parents=True)
        for name in ("Kbuild", "hello.c"):
            shutil.copyfile(REPO / "kmods" / "hello" / name, folder / name)
        try:
            guest = kdk("load", str(folder), KDK_BUILD="guest")
            assert guest.returncode == 0, guest.stderr
            assert "hello: hello, world" in guest.stdout
            release = kdk("exec", "--", "uname", "-r").stdout.strip()
            info = subprocess.run(
                ["modinfo", "-F", "vermagic", str(folder / "hello.ko")],
                capture_output=True,
                text=True,
            ).stdout
            assert info.split()[0] == release
        finally:
            shutil.rmtree(folder.parent, ignore_errors=True)

        # A user's script: a fabric Connection to the guest (backend remembered).
        with Kdk(project=REPO, vm=VM).connection() as c:
            assert c.run("id -u", hide=True, in_stream=False).stdout.strip() == "0"
            c.put(str(REPO / "Vagrantfile"), "/tmp/from-host")
            size = c.run("wc -c < /tmp/from-host", hide=True, in_stream=False).stdout.strip()
            assert size == str((REPO / "Vagrantfile").stat().st_size)

        assert kdk("exec", "--", "true").returncode == 0
        assert kdk("exec", "--", "sh", "-c", "exit 7").returncode == 7
        res = kdk("exec", "--", "sh", "-c", "cat /proc/sys/kernel/osrelease; id -u")
        assert res.stdout.split()[1] == "0"

        # A module that crashes the guest: reported (exit 4), and the VM comes back.
        assert kdk("load", "faulty").returncode == 0
        boot_id = ["cat", "/proc/sys/kernel/random/boot_id"]  # new at every boot
        before = kdk("exec", "--", *boot_id)
        assert before.returncode == 0, before.stderr
        crash = kdk("exec", "--", "sh", "-c", "echo null > /sys/kernel/debug/kdk_faulty/trigger")
        assert crash.returncode == 4, crash.stderr
        assert "faulty" in crash.stderr
        assert "the VM was booted again" in crash.stderr
        again = kdk("exec", "--", *boot_id)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() != before.stdout.strip()  # it did boot again

        assert "VM stopped" in kdk("down").stderr
        assert kdk("status").returncode == 3
    finally:
        destroy = kdk("down", "--destroy")
    assert destroy.returncode == 0, destroy.stderr
    assert not Path("/run/netns", NETNS).exists()


def orphan(name: str, console: Path) -> str:
    """A domain `name` as a kdk killed mid-`up` leaves it: defined, never
    destroyed, its console log in the state folder of the VM it was for."""
    return (
        f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory>"
        "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>"
        f"<console type='file'><source path='{console}'/><target type='serial'/></console>"
        "</devices></domain>"
    )


@real
def test_a_domain_left_by_a_killed_kdk_is_removed_and_another_projects_is_not(
    host_net: dict[str, str], tmp_path: Path
) -> None:
    vm = VM + "-orphan"
    domain = f"kdk-{vm}-default"
    libvirt = Libvirt()
    libvirt.ensure(print)
    definition = tmp_path / "domain.xml"
    try:
        # Made for a project that exists (its VM folder is there): not kdk's to remove.
        other = tmp_path / "other" / ".kdk" / "vms" / vm
        other.mkdir(parents=True)
        definition.write_text(orphan(domain, other / "console.log"))
        libvirt.virsh("define", str(definition))
        up = kdk("up", "--backend", "vagrant", KDK_VM=vm)
        assert up.returncode == 1
        assert up.stderr.strip().splitlines()[-1] == (
            f"kdk: the libvirt domain {domain} is another kdk VM's (its folder {other}): "
            "`kdk down --destroy` it there, or choose another --vm name"
        )
        assert kdk("down", "--destroy", KDK_VM=vm).returncode == 0
        assert libvirt.domain_xml(domain) is not None  # still there, untouched
        libvirt.virsh("undefine", domain)

        # Made for a folder removed since (a clone deleted, a run killed): removed.
        definition.write_text(orphan(domain, tmp_path / "gone" / "console.log"))
        libvirt.ensure(print)
        libvirt.virsh("define", str(definition))
        assert libvirt.domain_xml(domain) is not None
        assert not Kdk(project=REPO, vm=vm, backend="vagrant").down(destroy=True)
        # No domain left, so kdk's libvirt stopped: its definitions went with its /etc copy.
        assert not Path("/run/netns", NETNS).exists()
        assert not Path("/etc/netns", NETNS).exists()
    finally:
        if libvirt.running() and libvirt.domain_xml(domain) is not None:
            libvirt.virsh("undefine", domain)


@real
def test_kdk_on_the_users_own_libvirt(host_net: dict[str, str], tmp_path: Path) -> None:
    """`--libvirt URI,netns=NS`: a libvirt the user runs, used as it is. The
    test plays the user: libvirtd and virtlogd in a namespace of its own,
    started as kdk's own mode starts them. kdk starts no daemon and creates
    no namespace, remembers the choice, and `down --destroy` removes its
    domain and pool and leaves the user's daemons running."""
    Libvirt().stop_if_idle()  # kdk's own, from the tests before: one libvirtd at a time
    if answers(LIBVIRT_SOCK):
        pytest.skip(
            f"a libvirtd answers on {LIBVIRT_SOCK} already (a kdk VM's, or the "
            "host's): the test starts the user's own there"
        )
    users = "kdk-test-users-libvirt"
    run_dir = tmp_path / "run"
    vm = VM + "-mine"
    mine = Libvirt(LibvirtAt(SYSTEM_URI, users, kdk_owned=False))
    start_confined(users, run_dir)
    daemons = {name: read_pid(run_dir / f"{name}.pid") or 0 for name in DAEMONS}
    try:
        networks = mine.virsh("net-list", "--all", "--name")
        # kdk's own mode refuses a libvirtd it did not start, naming --libvirt.
        refused = kdk("up", "--backend", "vagrant", KDK_VM=vm + "-refused")
        assert refused.returncode == 1
        assert f"--libvirt {SYSTEM_URI}" in refused.stderr.splitlines()[-1]
        kdk("down", "--destroy", KDK_VM=vm + "-refused")

        up = kdk("up", "--backend", "vagrant", "--libvirt", f"{mine.at}", KDK_VM=vm)
        assert up.returncode == 0, up.stderr
        assert not Path("/run/netns", NETNS).exists()  # kdk made no namespace
        assert not RUN.exists()  # and started no daemon
        assert f"kdk-{vm}-default" in mine.virsh("list", "--name").split()
        assert f"kdk-{vm}" in mine.virsh("pool-list", "--name").split()

        # Remembered: the commands after `up` reach the guest in the user's namespace.
        assert kdk("exec", "--", "sh", "-c", "exit 7", KDK_VM=vm).returncode == 7
        load = kdk("load", "hello", KDK_VM=vm)
        assert load.returncode == 0, load.stderr
        assert "hello: hello, world" in load.stdout
        switch = kdk("up", "--backend", "vagrant", "--libvirt", "kdk", KDK_VM=vm)
        assert switch.returncode == 1
        assert "`kdk down --destroy` it before --libvirt kdk" in switch.stderr

        destroy = kdk("down", "--destroy", KDK_VM=vm)
        assert destroy.returncode == 0, destroy.stderr
        for name, pid in daemons.items():
            assert process_alive(pid, name), f"the user's {name} was stopped"
        assert f"kdk-{vm}-default" not in mine.virsh("list", "--all", "--name").split()
        assert f"kdk-{vm}" not in mine.virsh("pool-list", "--all", "--name").split()
        # vagrant-libvirt's management network, made for the VM, is gone too
        assert mine.virsh("net-list", "--all", "--name") == networks
        assert Path("/run/netns", users).exists()
        assert not Path("/run/netns", NETNS).exists()
    finally:
        kdk("down", "--destroy", KDK_VM=vm)
        stop_confined(users, run_dir)
    assert host_network() == host_net


@real
def test_host_network_unchanged(host_net: dict[str, str]) -> None:
    Libvirt().stop_if_idle()
    assert host_network() == host_net
