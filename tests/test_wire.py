"""The packet wire on a real guest: frames in, the kernel's answers out."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from scapy.layers.l2 import ARP, Ether

from kdk.api import Kdk
from kdk.errors import WireBusy
from kdk.net.wire import Wire
from kdk.vm.link import WIRE, owner
from kdk.vm.qemu import SSH_NIC_MAC

from .conftest import PROJECT, kdk_cli

pytestmark = pytest.mark.vm


def test_the_wire_is_eth1_at_every_boot(vm: Kdk) -> None:
    # the README and the labs name it, and eth0 is the NIC sshd is reached
    # on, whatever order the initramfs loaded the drivers in
    macs = vm.exec(f"cat /sys/class/net/{WIRE.guest_if}/address /sys/class/net/eth0/address")
    assert macs.stdout.decode().split() == [WIRE.guest_mac, SSH_NIC_MAC]


def test_the_guest_answers_arp_icmp_and_tcp(vm: Kdk, tmp_path: Path) -> None:
    pcap = tmp_path / "wire.pcap"
    with vm.wire(pcap=pcap) as w:
        arp = w.sr1(Ether() / ARP(pdst=w.guest_ip), timeout=5, verbose=0)
        assert arp is not None and arp[ARP].op == 2 and arp[ARP].hwsrc == w.guest_mac
        echo = w.sr1(
            Ether() / IP(dst=w.guest_ip) / ICMP(id=7, seq=1) / b"kdk", timeout=5, verbose=0
        )
        assert echo is not None and echo[ICMP].type == 0 and bytes(echo[ICMP].payload) == b"kdk"
        syn = w.sr1(
            Ether() / IP(dst=w.guest_ip) / TCP(sport=40000, dport=22, flags="S"),
            timeout=5,
            verbose=0,
        )
        assert syn is not None and syn[TCP].flags == "SA"
        w.send(Ether() / IP(dst=w.guest_ip) / TCP(sport=40000, dport=22, flags="R", seq=syn.ack))
        closed = w.sr1(
            Ether() / IP(dst=w.guest_ip) / TCP(sport=40001, dport=9, flags="S"),
            timeout=5,
            verbose=0,
        )
        assert closed is not None and closed[TCP].flags == "RA"
    # every frame both ways, readable by tcpdump (scripts/install-deps installs it)
    read = subprocess.run(["tcpdump", "-r", str(pcap), "-n"], capture_output=True, text=True)
    assert read.returncode == 0, read.stderr
    lines = read.stdout.splitlines()
    assert len(lines) >= 8 and any("ICMP echo reply" in ln for ln in lines), read.stdout


def test_the_host_end_answers_the_guests_arp_and_a_sniffer_sees_the_request(vm: Kdk) -> None:
    with vm.wire() as w:
        w.drain()
        script = (
            f"ip neigh del {w.host_ip} dev eth1 && busybox ping -c 1 -W 3 {w.host_ip}; "
            f"ip neigh replace {w.host_ip} lladdr {w.host_mac} nud permanent dev eth1"
        )
        argv = [sys.executable, "-m", "kdk.cli", "exec", "--", "sh", "-c", script]
        guest = subprocess.Popen(argv, cwd=PROJECT, env=_env(vm), stdout=subprocess.DEVNULL)
        frames = w.sniff(timeout=30, stop_filter=lambda p: ICMP in p, verbose=0)
        guest.wait(60)  # its ping fails: the host end answers ARP, not echo requests
    asks = [f for f in frames if ARP in f and f[ARP].op == 1 and f[ARP].pdst == w.host_ip]
    assert asks, frames.summary()
    # the guest took the host end's answer: its echo request goes to host_mac
    (echo,) = [f for f in frames if ICMP in f]
    assert echo[ICMP].type == 8 and echo[Ether].dst == w.host_mac


def test_one_owner_at_a_time_and_the_second_is_told_who(vm: Kdk) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom kdk.api import Kdk\n"
            "w = Kdk().wire(); print('held', flush=True); sys.stdin.read()",
        ],
        cwd=PROJECT,
        env=_env(vm),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert owner(vm.backend.state.path) == holder.pid
        with pytest.raises(WireBusy, match=f"owned by pid {holder.pid}"):
            vm.wire()
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 5
    while owner(vm.backend.state.path) is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    with vm.wire() as w:  # a dead owner's lock is free again
        assert isinstance(w, Wire)


def _env(vm: Kdk) -> dict[str, str]:
    return dict(os.environ, KDK_VM=vm.backend.state.path.name)


def test_kdk_wire_prints_both_ends_and_records(vm: Kdk, tmp_path: Path) -> None:
    facts = kdk_cli("wire")
    assert facts.returncode == 0, facts.stderr
    assert "eth1  52:54:00:6b:64:02  10.9.0.2/24" in facts.stdout and "owner   none" in facts.stdout
    pcap = tmp_path / "r.pcap"
    rec = kdk_cli("wire", "--pcap", str(pcap), "--duration", "0.5")
    assert rec.returncode == 0 and "0 frames" in rec.stderr, rec.stderr
    assert pcap.read_bytes()[:4] == bytes.fromhex("d4c3b2a1")  # a pcap file, little-endian
    with vm.wire():
        busy = kdk_cli("wire", "--pcap", str(pcap), "--duration", "0.5")
    assert busy.returncode == 1 and f"owned by pid {os.getpid()}" in busy.stderr
