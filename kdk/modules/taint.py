"""The kernel's taint flags (/proc/sys/kernel/tainted), as letters and words."""

from __future__ import annotations

# Bit number -> (letter, meaning), from Documentation/admin-guide/tainted-kernels.rst.
FLAGS = {
    0: ("P", "proprietary module loaded"),
    1: ("F", "module force loaded"),
    2: ("S", "kernel running on an out of specification system"),
    3: ("R", "module force unloaded"),
    4: ("M", "processor reported a machine check exception"),
    5: ("B", "bad page referenced or unexpected page flags"),
    6: ("U", "taint requested by userspace"),
    7: ("D", "kernel died recently (oops or BUG)"),
    8: ("A", "ACPI table overridden by user"),
    9: ("W", "kernel issued a warning"),
    10: ("C", "staging driver loaded"),
    11: ("I", "workaround for platform firmware bug applied"),
    12: ("O", "externally-built (out-of-tree) module loaded"),
    13: ("E", "unsigned module loaded"),
    14: ("L", "soft lockup occurred"),
    15: ("K", "kernel live patched"),
    16: ("X", "auxiliary taint"),
    17: ("T", "kernel built with the struct randomization plugin"),
    18: ("N", "an in-kernel test has been run"),
}
# What loading any module built outside the kernel tree is expected to add.
EXPECTED = frozenset("OE")


def new_flags(before: int, after: int, expected: frozenset[str] = EXPECTED) -> list[str]:
    """Flags set by something between `before` and `after`, beyond `expected`,
    each as "W (kernel issued a warning)"."""
    added = after & ~before
    out = []
    for bit in range(added.bit_length()):
        if added >> bit & 1:
            letter, meaning = FLAGS.get(bit, (f"bit{bit}", "unknown flag"))
            if letter not in expected:
                out.append(f"{letter} ({meaning})")
    return out
