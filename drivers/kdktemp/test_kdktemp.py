"""kdktemp in the guest, on a KDK-T1 that i2c-stub plays at 0x48: registers
set through /dev/i2c-N read back as exact temperatures through hwmon, and
limits written through hwmon read back as exact register bytes."""

from __future__ import annotations

import errno
import json
from collections.abc import Iterator
from typing import Any

import pytest

from kdk.api import Kdk
from kdk.errors import LoadFailed
from kdk.testing import log_mark, log_since, sh

pytestmark = pytest.mark.module("kdktemp")

ADDR = 0x48
STUB = "SMBus stub driver"
TEMP, THYST, TOS, ID = 0x00, 0x02, 0x03, 0x07

# Runs in the guest: argv is the bus number and a JSON list of operations,
# done in order on the chip at ADDR (through /dev/i2c-N with I2C_SLAVE_FORCE,
# as the driver owns the address) and on files; prints a JSON list with one
# result per operation. Word registers are sent MSB first.
#   ["word", reg, msb, lsb]  set      ["byte", reg, value]  set
#   ["read", reg]            -> [msb, lsb]
#   ["plain", reg]           -> byte read with I2C_SLAVE (not forced), or -errno
#   ["cat", path]            -> its text, or -errno
#   ["echo", path, text]     -> bytes written, or -errno
_OPS = f"""
import json, os, smbus2, sys
smb = smbus2.SMBus(int(sys.argv[1]), force=True)
out = []
for op, *a in json.loads(sys.argv[2]):
    try:
        if op == "word":
            smb.write_word_data({ADDR}, a[0], a[1] | a[2] << 8)
        elif op == "byte":
            smb.write_byte_data({ADDR}, a[0], a[1])
        elif op == "plain":  # without I2C_SLAVE_FORCE
            out.append(smbus2.SMBus(int(sys.argv[1])).read_byte_data({ADDR}, a[0]))
        elif op == "read":
            w = smb.read_word_data({ADDR}, a[0])
            out.append([w & 0xff, w >> 8])
        elif op == "cat":
            with open(a[0]) as f:
                out.append(f.read().strip())
        elif op == "echo":
            fd = os.open(a[0], os.O_WRONLY)
            try:
                out.append(os.write(fd, a[1].encode()))
            finally:
                os.close(fd)
    except OSError as e:
        out.append(-e.errno)
print(json.dumps(out))
"""


def ops(vm: Kdk, bus: int, *operations: list[Any]) -> list[Any]:
    result: list[Any] = json.loads(
        sh(vm, ["python3", "-c", _OPS, str(bus), json.dumps(operations)])
    )
    return result


@pytest.fixture
def stub(vm: Kdk) -> Iterator[int]:
    """i2c-stub with a chip at ADDR (all registers 0) and i2c-dev loaded;
    the stub's bus number. Afterwards the chip and the modules are gone."""
    bus = int(
        sh(
            vm,
            f"""modprobe i2c-stub chip_addr={ADDR:#x} && modprobe i2c-dev &&
        for d in /sys/bus/i2c/devices/i2c-*; do
            [ "$(cat $d/name)" = "{STUB}" ] && echo ${{d##*-}}; done""",
        )
    )
    yield bus
    vm.exec(f"""rmmod kdktemp_board 2>/dev/null
        echo {ADDR:#x} > /sys/bus/i2c/devices/i2c-{bus}/delete_device 2>/dev/null
        rmmod kdktemp lm75 2>/dev/null; rmmod i2c-stub""")


def new_log(vm: Kdk, since: int) -> list[str]:
    """The kernel log lines of I2C devices after record `since` (log_mark)."""
    return [r.text for r in log_since(vm, since) if r.text.startswith(("kdktemp ", "i2c "))]


def client(bus: int) -> str:
    return f"/sys/bus/i2c/devices/{bus}-{ADDR:04x}"


def hwmon(vm: Kdk, bus: int) -> str:
    """The hwmon folder of the client at ADDR (exactly one)."""
    (name,) = sh(vm, f"ls {client(bus)}/hwmon").split()
    return f"{client(bus)}/hwmon/{name}"


def test_binds_by_new_device_and_converts_exact_temperatures(loaded: Kdk, stub: int) -> None:
    assert ops(loaded, stub, ["byte", ID, 0xA1], ["word", TEMP, 0x19, 0x80], ["plain", ID]) == [
        0xA1
    ]
    seq = log_mark(loaded)
    sh(loaded, f"echo kdktemp {ADDR:#x} > /sys/bus/i2c/devices/i2c-{stub}/new_device")
    mon = hwmon(loaded, stub)
    assert new_log(loaded, seq) == [
        f"kdktemp {stub}-{ADDR:04x}: KDK-T1 on {STUB}, {mon.rsplit('/', 1)[1]}",
        f"i2c i2c-{stub}: new_device: Instantiated device kdktemp at {ADDR:#x}",
    ]
    cases = {  # register bytes MSB first -> millidegrees Celsius
        (0x19, 0x80): 25500,
        (0x19, 0x9F): 25500,  # the low 5 bits are not part of the value
        (0x00, 0x20): 125,
        (0x00, 0x00): 0,
        (0xFF, 0xE0): -125,
        (0xF3, 0x60): -12625,
        (0x7F, 0xE0): 127875,
        (0x80, 0x00): -128000,
    }
    got = ops(
        loaded,
        stub,
        ["plain", ID],  # the driver owns the address now
        ["cat", f"{mon}/name"],
        *[
            op
            for (msb, lsb) in cases
            for op in (["word", TEMP, msb, lsb], ["cat", f"{mon}/temp1_input"])
        ],
    )
    assert got == [-errno.EBUSY, "kdktemp", *[str(mc) for mc in cases.values()]]
    # the driver caches nothing: a register changed under it is read at once
    assert ops(
        loaded,
        stub,
        ["word", TOS, 0x50, 0x00],
        ["cat", f"{mon}/temp1_max"],
        ["word", THYST, 0x4B, 0x00],
        ["cat", f"{mon}/temp1_max_hyst"],
    ) == ["80000", "75000"]


def test_limits_written_through_hwmon_land_in_the_registers(loaded: Kdk, stub: int) -> None:
    ops(loaded, stub, ["byte", ID, 0xA1])
    sh(loaded, f"echo kdktemp {ADDR:#x} > /sys/bus/i2c/devices/i2c-{stub}/new_device")
    mon = hwmon(loaded, stub)
    cases = {  # written (millidegrees) -> register bytes, value read back
        "30000": ((0x1E, 0x00), "30000"),
        "30063": ((0x1E, 0x20), "30125"),  # rounded to the closest 0.125 degC step
        "-12625": ((0xF3, 0x60), "-12625"),
        "200000": ((0x7D, 0x00), "125000"),  # clamped to the limits' range
        "-100000": ((0xC9, 0x00), "-55000"),
    }
    for attr, reg in [("temp1_max", TOS), ("temp1_max_hyst", THYST)]:
        path = f"{mon}/{attr}"
        got = ops(
            loaded,
            stub,
            *[op for text in cases for op in (["echo", path, text], ["read", reg], ["cat", path])],
        )
        want = [x for text, (b, back) in cases.items() for x in (len(text), list(b), back)]
        assert got == want, attr
    assert ops(loaded, stub, ["read", TEMP], ["echo", f"{mon}/temp1_input", "1"]) == [[0, 0], -13]


def test_unloading_the_driver_leaves_the_client(loaded: Kdk, stub: int) -> None:
    ops(loaded, stub, ["byte", ID, 0xA1])
    sh(loaded, f"echo kdktemp {ADDR:#x} > /sys/bus/i2c/devices/i2c-{stub}/new_device")
    mon = hwmon(loaded, stub)
    loaded.unload("kdktemp")
    assert not loaded.exec(["test", "-e", mon]).ok
    assert sh(loaded, f"cat {client(stub)}/name; ls {client(stub)}") == (
        "kdktemp\nmodalias\nname\npower\nsubsystem\nuevent\n"
    )


def test_the_kernels_lm75_driver_reads_the_same_chip(vm: Kdk, stub: int) -> None:
    """A driver written elsewhere (the kernel's own lm75) binds to the same
    emulated chip: the register map is LM75A-like."""
    ops(vm, stub, ["word", TEMP, 0x19, 0x80])
    sh(vm, f"modprobe lm75 && echo lm75 {ADDR:#x} > /sys/bus/i2c/devices/i2c-{stub}/new_device")
    mon = hwmon(vm, stub)
    assert ops(
        vm,
        stub,
        ["cat", f"{mon}/name"],
        ["cat", f"{mon}/temp1_input"],
        ["word", TEMP, 0xE7, 0x00],
        ["cat", f"{mon}/temp1_input"],
    ) == ["lm75", "25500", "-25000"]


def test_a_chip_with_another_id_is_refused(loaded: Kdk, stub: int) -> None:
    ops(loaded, stub, ["byte", ID, 0x75])
    seq = log_mark(loaded)
    sh(loaded, f"echo kdktemp {ADDR:#x} > /sys/bus/i2c/devices/i2c-{stub}/new_device")
    log = new_log(loaded, seq)
    assert f"kdktemp {stub}-{ADDR:04x}: chip id 0x75, not 0xa1: no KDK-T1" in log
    assert sh(loaded, f"ls {client(stub)}").split() == [
        "modalias",
        "name",
        "power",
        "subsystem",
        "uevent",
    ]


def test_board_module_declares_the_chip(loaded: Kdk, stub: int) -> None:
    ops(loaded, stub, ["byte", ID, 0xA1], ["word", TEMP, 0xF3, 0x60])
    log = [r.text for r in loaded.load("kdktemp_board").log]
    assert f"kdktemp_board: kdktemp at {ADDR:#x} on i2c-{stub} ({STUB})" in log
    mon = hwmon(loaded, stub)
    assert f"kdktemp {stub}-{ADDR:04x}: KDK-T1 on {STUB}, {mon.rsplit('/', 1)[1]}" in log
    got = sh(loaded, f"cat {mon}/temp1_input; readlink -f {client(stub)}/driver")
    assert got == "-12625\n/sys/bus/i2c/drivers/kdktemp\n"
    # the board code holds the adapter: i2c-stub cannot go while the client is there
    assert "in use" in loaded.exec("rmmod i2c-stub").stderr.decode()
    assert loaded.unload("kdktemp_board").log[-1].text == "kdktemp_board: kdktemp removed"
    assert not loaded.exec(["test", "-e", client(stub)]).ok


def test_board_module_without_its_adapter_fails(vm: Kdk) -> None:
    with pytest.raises(LoadFailed) as err:
        vm.load("kdktemp_board", ["bus=nope"])
    assert 'kdktemp_board: no I2C adapter named "nope"' in str(err.value) + str(err.value.details)
