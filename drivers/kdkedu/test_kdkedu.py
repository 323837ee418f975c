"""kdkedu against QEMU's edu device (kdk up --device edu), with the values
the device defines: its identification, the inverted liveness register,
factorials (32-bit, wrapping), a DMA round trip through its buffer, and
exactly one interrupt per operation."""

from __future__ import annotations

import errno
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.errors import LoadFailed
from kdk.guest.device import GuestFile, ioctl_numbers
from kdk.testing import sh, wait_asleep

IOC = ioctl_numbers(Path(__file__).with_name("kdkedu_ioctl.h"))
pytestmark = [pytest.mark.devices("edu"), pytest.mark.module("kdkedu")]

DEV = "/dev/kdkedu0"
DRIVER = "/sys/bus/pci/drivers/kdkedu"
# the edu's PCI address: the device whose ids are QEMU's edu
FIND = "grep -l 0x11e8 /sys/bus/pci/devices/*/device | xargs -n1 dirname | xargs -n1 basename"
BUF_SIZE = 4095  # the device's 4 KiB buffer but its last byte (see kdkedu_ioctl.h)
PATTERN = bytes((i * 7 + 3) & 0xFF for i in range(BUF_SIZE))


def call(dev: GuestFile, name: str, value: int = 0, timeout: float = 10.0) -> int:
    """An ioctl with a __u32 in and out; the value the driver wrote back."""
    return int(struct.unpack("I", dev.ioctl(IOC[name], struct.pack("I", value), timeout)[1])[0])


def irq_count(vm: Kdk) -> tuple[int, int]:
    """(the kdkedu0 line's count over all CPUs in /proc/interrupts, the
    driver's own count)."""
    out = sh(
        vm,
        "awk '/ kdkedu0$/ {for (i = 2; $i ~ /^[0-9]+$/; i++) n += $i; print n}' "
        "/proc/interrupts; cat /sys/class/misc/kdkedu0/device/irqs",
    )
    proc, own = out.split()
    return int(proc), int(own)


def test_ioctl_numbers_come_from_the_shared_header() -> None:
    assert IOC == {
        "KDKEDU_IOC_FACTORIAL": 0xC0046B01,
        "KDKEDU_IOC_LIVENESS": 0xC0046B02,
        "KDKEDU_IOC_WAIT_IRQ": 0x80046B03,
    }


def test_probe_binds_the_edu_and_reads_its_registers(loaded: Kdk) -> None:
    pci = sh(loaded, FIND).strip()
    out = sh(
        loaded,
        f"cd /sys/bus/pci/devices/{pci}; cat vendor device; "
        "basename $(readlink driver); cat ident irq_mode; "
        f"basename $(readlink /sys/class/misc/kdkedu0/device)",
    )
    assert out.split() == ["0x1234", "0x11e8", "kdkedu", "0x010000ed", "msi", pci]
    assert sh(loaded, "stat -c '%F %a %t' " + DEV).split() == [
        "character",
        "special",
        "file",
        "666",
        "a",
    ]


def test_factorial_and_liveness_through_the_device(loaded: Kdk) -> None:
    with loaded.open_device(DEV) as dev:
        assert call(dev, "KDKEDU_IOC_FACTORIAL", 12) == 479001600
        assert call(dev, "KDKEDU_IOC_FACTORIAL", 0) == 1
        assert call(dev, "KDKEDU_IOC_FACTORIAL", 13) == 6227020800 % 2**32  # 32 bits, wrapped
        assert call(dev, "KDKEDU_IOC_LIVENESS", 0x12345678) == 0xEDCBA987
        assert call(dev, "KDKEDU_IOC_LIVENESS", 0) == 0xFFFFFFFF
        with pytest.raises(OSError) as e:
            dev.ioctl(0x6B09)
        assert e.value.errno == errno.ENOTTY


def test_dma_round_trip_through_the_device_buffer(loaded: Kdk) -> None:
    with loaded.open_device(DEV) as dev:
        assert dev.write(PATTERN) == BUF_SIZE
        with pytest.raises(OSError) as e:  # past the device's buffer
            dev.write(b"x")
        assert e.value.errno == errno.ENOSPC
    # the driver zeroes its DMA memory before each read: what comes back
    # was in the device; it stays there over a reload of the driver
    loaded.load("kdkedu")
    with loaded.open_device(DEV) as dev:
        assert dev.read(100) + dev.read(8192) == PATTERN
        assert dev.read(1) == b""  # end of the buffer


def test_one_interrupt_per_operation_in_proc_interrupts(loaded: Kdk) -> None:
    before = irq_count(loaded)
    with loaded.open_device(DEV) as dev:
        for n in (5, 10, 12):
            call(dev, "KDKEDU_IOC_FACTORIAL", n)
        call(dev, "KDKEDU_IOC_LIVENESS", 1)  # no interrupt
        dev.write(PATTERN[:512])
    with loaded.open_device(DEV) as dev:
        assert dev.read(512) == PATTERN[:512]
    after = irq_count(loaded)
    assert (after[0] - before[0], after[1] - before[1]) == (5, 5)


def test_intx_when_msi_is_not_used(vm: Kdk) -> None:
    vm.load("kdkedu", ["msi=0"])
    assert sh(vm, "cat /sys/class/misc/kdkedu0/device/irq_mode").strip() == "intx"
    with vm.open_device(DEV) as dev:
        assert call(dev, "KDKEDU_IOC_FACTORIAL", 12) == 479001600
        assert dev.write(PATTERN) == BUF_SIZE
    assert sh(vm, "cat /sys/class/misc/kdkedu0/device/irqs").strip() == "2"


def test_wait_for_an_interrupt_raised_from_sysfs(loaded: Kdk) -> None:
    with loaded.open_device(DEV) as dev, ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(call, dev, "KDKEDU_IOC_WAIT_IRQ", 0, 30.0)
        wait_asleep(loaded, dev.pid, "kdkedu_ioctl")  # on the driver's wait queue
        sh(loaded, "echo 0x1000 > /sys/class/misc/kdkedu0/device/raise")  # one interrupt
        assert waiter.result(timeout=40) == 0x1000


def test_remove_while_an_operation_waits(loaded: Kdk) -> None:
    pci = sh(loaded, FIND).strip()
    with loaded.open_device(DEV) as dev, ThreadPoolExecutor(1) as pool:
        waiter = pool.submit(call, dev, "KDKEDU_IOC_WAIT_IRQ", 0, 30.0)
        wait_asleep(loaded, dev.pid, "kdkedu_ioctl")
        with pytest.raises(LoadFailed, match="in use"):  # the open file holds the module
            loaded.unload("kdkedu")
        sh(loaded, f"echo {pci} > {DRIVER}/unbind")
        with pytest.raises(OSError) as e:
            waiter.result(timeout=40)
        assert e.value.errno == errno.ENODEV
        with pytest.raises(OSError) as e:  # the file outlives the device
            call(dev, "KDKEDU_IOC_FACTORIAL", 3)
        assert e.value.errno == errno.ENODEV
    log = loaded.unload("kdkedu").log  # no oops: kdk raises KernelCrash on one
    assert sh(loaded, "ls /dev | grep -c kdkedu || true").strip() == "0"
    assert log == []  # the removal was logged by the unbind, not the unload
