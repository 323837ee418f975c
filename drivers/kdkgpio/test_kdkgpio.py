"""kdkgpio in the guest: lines read and driven through the GPIO character
device (libgpiod), edges set from debugfs counted exactly by gpiod's events
and by a kernel consumer's interrupt handler, and legacy GPIO numbers."""

from __future__ import annotations

import errno
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kdk.api import Kdk, LoadResult
from kdk.errors import LoadFailed
from kdk.testing import sh

pytestmark = pytest.mark.module("kdkgpio")

DEBUGFS = "/sys/kernel/debug/kdkgpio"
CONSUMER = "/sys/devices/platform/kdkgpio-irq"

# Runs in the guest with python3-libgpiod (1.6, the v1 character device
# ABI): reads and drives lines of the chip labelled kdkgpio and counts the
# edges set through debugfs; prints what it saw as JSON.
_GPIOD = f"""
import errno, gpiod, json, os

def outside(line, text):
    fd = os.open("{DEBUGFS}/line%d" % line, os.O_WRONLY)
    try:
        return os.write(fd, text.encode())
    except OSError as e:
        return -e.errno
    finally:
        os.close(fd)

def pin(line):
    with open("{DEBUGFS}/line%d" % line) as f:
        return int(f.read())

def events(line, wait):
    got = []
    while line.event_wait(nsec=wait):
        got += ["R" if e.type == gpiod.LineEvent.RISING_EDGE else "F"
                for e in line.event_read_multiple()]
    return got

chip = gpiod.Chip("kdkgpio")
out = {{"chip": [chip.label(), chip.num_lines()]}}

inp = chip.get_line(1)
inp.request(consumer="lab", type=gpiod.LINE_REQ_DIR_IN)
seen = []
for level in "1", "0", "1":
    outside(1, level)
    seen.append(inp.get_value())
out["input"] = seen + [inp.direction() == gpiod.Line.DIRECTION_INPUT, inp.consumer()]

drive = chip.get_line(5)
drive.request(consumer="lab", type=gpiod.LINE_REQ_DIR_OUT, default_val=1)
seen = [pin(5)]
for value in 0, 1:
    drive.set_value(value)
    seen.append(pin(5))
outside(5, "0")  # an output drives its pin: the outside does not change it
out["output"] = seen + [pin(5), drive.get_value()]

edge = chip.get_line(3)
edge.request(consumer="lab", type=gpiod.LINE_REQ_EV_BOTH_EDGES)
seen = []
for _ in range(10):
    outside(3, "1")
    outside(3, "0")
    seen += events(edge, 0)  # a write returns once its edge is queued
outside(3, "0")  # no edge: the level does not change
out["edges"] = seen + events(edge, 200000000)
for _ in range(10):  # 20 edges unread: the v1 event FIFO holds 16
    outside(3, "1")
    outside(3, "0")
out["unread"] = events(edge, 200000000)
out["bad"] = [outside(3, "2"), outside(3, "")]
print(json.dumps(out))
"""


def texts(res: LoadResult) -> list[str]:
    return [r.text for r in res.log]


@pytest.fixture
def chip(vm: Kdk) -> Iterator[Callable[..., list[str]]]:
    """Loads kdkgpio with the given parameters: its kernel log lines.
    Afterwards its consumers are unloaded (kdkgpio by the module marker)."""

    def load(*params: str) -> list[str]:
        return texts(vm.load("kdkgpio", params))

    yield load
    vm.exec("rmmod kdkgpio_irq kdkgpio_legacy 2>/dev/null; true")


def test_lines_and_edges_through_the_character_device(chip: Any, vm: Kdk) -> None:
    assert any(t.startswith("kdkgpio: 8 lines at GPIO ") for t in chip())
    got = json.loads(sh(vm, ["python3", "-c", _GPIOD]))
    assert got == {
        "chip": ["kdkgpio", 8],
        "input": [1, 0, 1, True, "lab"],
        "output": [1, 0, 1, 1, 1],
        "edges": ["R", "F"] * 10,
        "unread": ["R", "F"] * 8,
        "bad": [-errno.EINVAL, -errno.EINVAL],
    }


def toggle(line: int, times: int) -> str:
    path = f"{DEBUGFS}/line{line}"
    return f"for i in $(seq {times}); do echo 1 > {path}; echo 0 > {path}; done"


def test_a_kernel_consumer_takes_an_interrupt_per_edge(chip: Any, vm: Kdk) -> None:
    chip()
    log = texts(vm.load("kdkgpio_irq", ["line=2"]))
    (m,) = filter(
        None, (re.fullmatch(r"kdkgpio_irq: kdkgpio line 2, GPIO (\d+), IRQ (\d+)", t) for t in log)
    )
    irq = int(m.group(2))
    got = sh(
        vm,
        f"""{toggle(2, 10)}; {toggle(3, 5)}
        cat {CONSUMER}/rising {CONSUMER}/falling; grep '^ *{irq}:' /proc/interrupts""",
    )
    rising, falling, row = got.splitlines()
    assert (rising, falling) == ("10", "10")
    # "40:  0  20  kdkgpio  2  kdkgpio-irq": a count per CPU, the irq_chip,
    # the line (hwirq), the handler's name
    _, *fields = row.split()
    cpus = fields.index("kdkgpio")
    assert sum(int(f) for f in fields[:cpus]) == 20
    assert fields[cpus + 1 :] == ["2", "kdkgpio-irq"]
    assert vm.exec(f"echo 1 > {CONSUMER}/rising").exit_code != 0  # only 0 resets
    assert "in use" in vm.exec("rmmod kdkgpio").stderr.decode()  # the consumer holds a line
    sh(vm, f"echo 0 > {CONSUMER}/falling; {toggle(2, 3)}")
    assert sh(vm, f"cat {CONSUMER}/rising {CONSUMER}/falling") == "3\n3\n"
    assert "kdkgpio_irq: 3 rising, 3 falling" in texts(vm.unload("kdkgpio_irq"))
    sh(vm, toggle(2, 2))  # no handler now: the edges go nowhere


def test_a_consumer_without_the_chip_fails_cleanly(vm: Kdk) -> None:
    vm.exec("rmmod kdkgpio 2>/dev/null; true")
    with pytest.raises(LoadFailed) as err:
        vm.load("kdkgpio_irq")
    assert "kdkgpio_irq: no GPIO chip labelled kdkgpio" in str(err.value) + err.value.details


def test_legacy_numbers_with_a_fixed_base(chip: Any, vm: Kdk) -> None:
    assert "kdkgpio: 8 lines at GPIO 0..7" in chip("base=0")
    assert sh(vm, "cat /sys/class/gpio/gpiochip0/label /sys/class/gpio/gpiochip0/base") == (
        "kdkgpio\n0\n"
    )
    assert "kdkgpio_legacy: GPIO 4 is 1" in texts(vm.load("kdkgpio_legacy"))
    assert sh(vm, f"cat {DEBUGFS}/line4; grep kdkgpio_legacy /sys/kernel/debug/gpio").split()[
        :2
    ] == ["1", "gpio-4"]
    assert "kdkgpio_legacy: GPIO 4 is 0" in texts(vm.unload("kdkgpio_legacy"))
    assert sh(vm, f"cat {DEBUGFS}/line4") == "0\n"


def test_legacy_numbers_need_a_fixed_base(chip: Any, vm: Kdk) -> None:
    (loaded,) = [t for t in chip() if t.startswith("kdkgpio: 8 lines at GPIO ")]
    assert loaded != "kdkgpio: 8 lines at GPIO 0..7"
    with pytest.raises(LoadFailed) as err:
        vm.load("kdkgpio_legacy")
    assert "kdkgpio_legacy: no GPIO 4" in str(err.value) + err.value.details


def test_ngpio_out_of_range_is_refused(vm: Kdk) -> None:
    with pytest.raises(LoadFailed) as err:
        vm.load("kdkgpio", ["ngpio=33"])
    assert "kdkgpio: ngpio=33 out of range 1..32" in str(err.value) + err.value.details
