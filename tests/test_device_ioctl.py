"""ioctl numbers read from a driver's C header (kdk.guest.device), no VM needed."""

from __future__ import annotations

from pathlib import Path

from kdk.guest.device import ioctl_numbers

HEADER = """\
#define DEMO_MAGIC 'k'
#define DEMO_IOC_RESET _IO(DEMO_MAGIC, 1)
#define DEMO_IOC_GET _IOR(DEMO_MAGIC, 2, int)
#define DEMO_IOC_SET _IOW('k', 3, unsigned long)
#define DEMO_IOC_SWAP _IOWR(DEMO_MAGIC, 4, __u32)
"""


def test_numbers_are_the_kernels_encoding_from_a_path_given_as_text(tmp_path: Path) -> None:
    header = tmp_path / "demo_ioctl.h"
    header.write_text(HEADER)
    numbers = ioctl_numbers(str(header))  # as the README writes it
    assert numbers == {  # direction << 30 | size << 16 | type << 8 | nr
        "DEMO_IOC_RESET": 0x00006B01,
        "DEMO_IOC_GET": 0x80046B02,
        "DEMO_IOC_SET": 0x40086B03,
        "DEMO_IOC_SWAP": 0xC0046B04,
    }
    assert ioctl_numbers(header) == numbers
