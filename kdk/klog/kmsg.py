"""The guest kernel log, read as /dev/kmsg records.

/dev/kmsg gives every record its sequence number, so kdk can show exactly
the lines one command produced: note the last number before, print the
records after it. Records look like `prio,seq,usec,flags[,...];text`, with
non-printable bytes escaped as \\xNN and continuation lines (key=value
dictionary entries) starting with a space.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Non-blocking dd reads one record per read() and stops at the end of the log.
DUMP = "{ dd if=/dev/kmsg iflag=nonblock bs=16384 2>/dev/null || :; }"


# A guest script that runs SKIP_OLD first holds /dev/kmsg open on fd 3,
# read to its end; NEW_RECORDS then prints exactly the records logged since
# (no sequence numbers to note and compare: awk would be one program more,
# and each costs ~50 ms in a guest under TCG). SKIP_OLD's dd leaves fd 3
# non-blocking, so the dd that reads the new records may be the static
# busybox's (`$b`, see kdk.inguest.BUSYBOX), which knows no iflag=nonblock.
# SKIP_OLD moves fd 3 to the end with kdk's kmsg_end (kdk/inguest/kmsg_end.c,
# which the init puts in /run/kdk): no old record read, one static program.
# Where it is not (a Vagrant box), coreutils' dd reads them, by its path:
# the script may run under busybox's sh, which runs its own applet for `dd`.
# A reader whose next record was overwritten meanwhile gets EPIPE once, then
# the oldest record left: dd runs again then.
KMSG_END = "/run/kdk/kmsg_end"
SKIP_OLD = (
    f"exec 3</dev/kmsg; if [ -x {KMSG_END} ]; then {KMSG_END} <&3; else "
    "{ /bin/dd <&3 iflag=nonblock bs=16384 >/dev/null 2>&1 || :; }; fi"
)
NEW_RECORDS = (
    "exec 4>&1; e=$($b dd <&3 bs=16384 2>&1 >&4)\n"
    'case $e in *"Broken pipe"*) $b dd <&3 bs=16384 2>/dev/null ;; esac'
)


# The guest kernel's remarks on the VM's own timing, which no command made:
# under emulation on a loaded host they land in any command's window
# (hrtimer's interrupt that ran late, once a boot; perf lowering its rate).
VM_TIMING = re.compile(r"hrtimer: interrupt took \d+ ns$|perf: interrupt took too long ")


@dataclass(frozen=True)
class Record:
    """One kernel log record."""

    seq: int
    level: int  # 0 (emerg) .. 7 (debug)
    facility: int  # 0 for the kernel, others for lines written to /dev/kmsg
    usec: int  # since boot
    text: str

    def format(self) -> str:
        """The record the way dmesg prints it: `[seconds.micros] text`."""
        return f"[{self.usec // 1_000_000:5d}.{self.usec % 1_000_000:06d}] {self.text}"


def _unescape(text: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m.group(1), 16)), text)


def parse(dump: str) -> list[Record]:
    """The records of a /dev/kmsg dump; continuation lines are dropped."""
    records = []
    for line in dump.splitlines():
        if not line or line.startswith(" "):
            continue
        head, sep, text = line.partition(";")
        fields = head.split(",")
        if not sep or len(fields) < 3:
            continue
        try:
            prio, seq, usec = int(fields[0]), int(fields[1]), int(fields[2])
        except ValueError:
            continue
        records.append(Record(seq, prio & 7, prio >> 3, usec, _unescape(text)))
    return records


def since(records: list[Record], seq: int) -> list[Record]:
    """The records newer than `seq`."""
    return [r for r in records if r.seq > seq]


def apart(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """`records` without the kernel's remarks on the VM's timing, and those."""
    timing = [r for r in records if r.facility == 0 and VM_TIMING.match(r.text)]
    return [r for r in records if r not in timing], timing
