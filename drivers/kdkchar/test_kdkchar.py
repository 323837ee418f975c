"""kdkchar in the guest, driven from Python through kdk.guest.device."""

from __future__ import annotations

import errno
import os
import select
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.errors import LoadFailed
from kdk.guest.device import GuestFile, ioctl_numbers
from kdk.testing import wait_asleep

IOC = ioctl_numbers(Path(__file__).with_name("kdkchar_ioctl.h"))
pytestmark = pytest.mark.module("kdkchar")

DEV = "/dev/kdkchar0"


def nonblocking(vm: Kdk) -> AbstractContextManager[GuestFile]:
    return vm.open_device(DEV, os.O_RDWR | os.O_NONBLOCK)


def test_ioctl_numbers_come_from_the_shared_header() -> None:
    assert IOC == {
        "KDKCHAR_IOC_GET_SIZE": 0x80045901,
        "KDKCHAR_IOC_GET_CAPACITY": 0x80045902,
        "KDKCHAR_IOC_CLEAR": 0x5903,
        "KDKCHAR_IOC_RESIZE": 0x40045904,
    }


def test_nodes_per_minor_and_loads_twice(vm: Kdk) -> None:
    for _ in range(2):
        vm.load("kdkchar", ["nr_devs=3"])
        nodes = vm.exec("ls /dev | grep kdkchar").stdout.decode().split()
        assert nodes == ["kdkchar0", "kdkchar1", "kdkchar2"]
        assert vm.unload("kdkchar").log[-1].text == "kdkchar: unloaded"
        assert vm.exec("ls /dev/kdkchar0").exit_code != 0
    with pytest.raises(LoadFailed) as exc:
        vm.load("kdkchar", ["nr_devs=0"])
    assert str(exc.value) == (
        "insmod kdkchar failed: init returned -EINVAL (22) (parameters: nr_devs=0)"
    )
    assert exc.value.details.endswith("kdkchar: nr_devs=0 out of range 1..64")


def test_round_trip_and_ioctls(loaded: Kdk) -> None:
    with nonblocking(loaded) as dev:
        data = bytes(range(256)) * 3
        assert dev.write(data) == len(data)
        assert dev.ioctl_get_int(IOC["KDKCHAR_IOC_GET_SIZE"]) == len(data)
        assert dev.ioctl_get_int(IOC["KDKCHAR_IOC_GET_CAPACITY"]) == 4096
        assert dev.read(100) + dev.read(4096) == data
        assert dev.write(b"x" * 5000) == 4096  # a short write: only what fits
        assert dev.ioctl(IOC["KDKCHAR_IOC_CLEAR"])[0] == 0
        assert dev.ioctl_get_int(IOC["KDKCHAR_IOC_GET_SIZE"]) == 0
        dev.write(b"keep")
        assert dev.ioctl_set_int(IOC["KDKCHAR_IOC_RESIZE"], 8192) == 0
        assert dev.ioctl_get_int(IOC["KDKCHAR_IOC_GET_CAPACITY"]) == 8192
        assert dev.read(10) == b"keep"


def test_bad_ioctls_and_bad_pointers(loaded: Kdk) -> None:
    with nonblocking(loaded) as dev:
        cases: list[tuple[Callable[[], object], int]] = [
            (lambda: dev.ioctl(0x6B63), errno.ENOTTY),  # unknown number
            (
                lambda: dev.ioctl(IOC["KDKCHAR_IOC_GET_SIZE"] & ~0xFF00 | ord("z") << 8),
                errno.ENOTTY,
            ),
            (lambda: dev.ioctl_set_int(IOC["KDKCHAR_IOC_RESIZE"], 0), errno.EINVAL),
            (lambda: dev.ioctl_set_int(IOC["KDKCHAR_IOC_RESIZE"], (1 << 20) + 1), errno.EINVAL),
            (lambda: dev.ioctl(IOC["KDKCHAR_IOC_GET_SIZE"], 1), errno.EFAULT),  # a pointer to 0x1
            (lambda: dev.ioctl(IOC["KDKCHAR_IOC_RESIZE"], 1), errno.EFAULT),
            (lambda: dev.write_from_bad_pointer(16), errno.EFAULT),
        ]
        for call, expected in cases:
            with pytest.raises(OSError) as err:
                call()
            assert err.value.errno == expected, err.value
        dev.write(b"0123456789")
        with pytest.raises(OSError) as err:
            dev.ioctl_set_int(IOC["KDKCHAR_IOC_RESIZE"], 4)  # smaller than the data
        assert err.value.errno == errno.EBUSY
        with pytest.raises(OSError) as err:
            dev.read_to_bad_pointer(4)
        assert err.value.errno == errno.EFAULT
        assert dev.read(100) == b"0123456789"  # nothing was lost to the failed calls


def test_nonblocking_semantics_and_poll(loaded: Kdk) -> None:
    with nonblocking(loaded) as dev:
        with pytest.raises(OSError) as err:
            dev.read(1)
        assert err.value.errno == errno.EAGAIN
        every = select.POLLIN | select.POLLRDNORM | select.POLLOUT | select.POLLWRNORM
        assert dev.poll(every) == select.POLLOUT | select.POLLWRNORM
        dev.write(b"a")
        assert dev.poll(every) == every
        dev.write(b"a" * 4095)
        assert dev.poll(every) == select.POLLIN | select.POLLRDNORM
        with pytest.raises(OSError) as err:
            dev.write(b"b")
        assert err.value.errno == errno.EAGAIN


def test_poll_waits_for_a_writer(loaded: Kdk) -> None:
    with loaded.open_device(DEV, os.O_RDONLY) as reader:
        waiting = ThreadPoolExecutor(1).submit(reader.poll, select.POLLIN, 20.0)
        wait_asleep(loaded, reader.pid, "do_sys_poll")
        assert not waiting.done()
        with loaded.open_device(DEV, os.O_WRONLY) as writer:
            writer.write(b"!")
        assert waiting.result(30) & select.POLLIN


def test_a_blocking_read_is_woken_by_a_writer(loaded: Kdk) -> None:
    with loaded.open_device(DEV, os.O_RDONLY) as reader:
        with pytest.raises(TimeoutError):
            reader.read(5, timeout=1)  # blocks, and a signal ends the wait
        pending = ThreadPoolExecutor(1).submit(reader.read, 5, 30.0)
        wait_asleep(loaded, reader.pid, "kdkchar_read")  # on the driver's wait queue
        assert not pending.done()
        with loaded.open_device(DEV, os.O_WRONLY) as writer:
            writer.write(b"wake!")
        assert pending.result(40) == b"wake!"


def test_a_blocking_write_is_woken_by_a_reader(loaded: Kdk) -> None:
    with loaded.open_device(DEV, os.O_WRONLY) as writer:
        writer.write(b"f" * 4096)
        pending = ThreadPoolExecutor(1).submit(writer.write, b"more", 30.0)
        wait_asleep(loaded, writer.pid, "kdkchar_write")
        assert not pending.done()
        with loaded.open_device(DEV, os.O_RDONLY) as reader:
            assert reader.read(4096) == b"f" * 4096
        assert pending.result(40) == 4


def test_concurrent_readers_and_writers_lose_and_duplicate_nothing(loaded: Kdk) -> None:
    """Records of 7 bytes (a write of 7 is never split), read 7 bytes at a
    time. Once the writers are done, one end record per reader follows
    them into the FIFO: a reader stops at its end record, so when all have
    stopped, everything written before the ends has been read."""
    writers, readers, per_writer = 2, 2, 20
    end = b"<-end->"
    got: list[bytes] = []
    lock = threading.Lock()

    def write(w: int) -> None:
        with loaded.open_device(DEV, os.O_WRONLY) as dev:
            for i in range(per_writer):
                record = f"<{w}:{i:03d}>".encode()
                assert dev.write(record, timeout=60) == len(record)

    def read() -> None:
        with loaded.open_device(DEV, os.O_RDONLY) as dev:
            while (record := dev.read(len(end), timeout=120)) != end:
                with lock:
                    got.append(record)

    with ThreadPoolExecutor(writers + readers) as pool:
        reading = [pool.submit(read) for _ in range(readers)]
        for f in [pool.submit(write, w) for w in range(writers)]:
            f.result(300)
        with loaded.open_device(DEV, os.O_WRONLY) as dev:
            for _ in range(readers):
                assert dev.write(end, timeout=60) == len(end)
        for f in reading:
            f.result(300)
    assert sorted(got) == sorted(
        f"<{w}:{i:03d}>".encode() for w in range(writers) for i in range(per_writer)
    )


def test_unload_is_refused_while_a_file_is_open(loaded: Kdk) -> None:
    with loaded.open_device(DEV, os.O_RDONLY), pytest.raises(LoadFailed, match="in use"):
        loaded.unload("kdkchar")
    assert loaded.unload("kdkchar").log[-1].text == "kdkchar: unloaded"
