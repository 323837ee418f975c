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


def last_seq(then: str = "") -> str:
    """Shell that prints the sequence number of the newest record, then
    what the awk statements `then` print (one program fewer to start than
    a command of its own: each costs ~50 ms in a guest under TCG)."""
    return DUMP + f" | awk -F'[,;]' '/^[^ ]/ {{s = $2}} END {{print s + 0; {then}}}'"


LAST_SEQ = last_seq()


def dump_since(seq_var: str, then: str = "") -> str:
    """Shell that prints the records newer than the number in $`seq_var`,
    then what the awk statements `then` print."""
    return DUMP + (
        f" | awk -F'[,;]' -v b=\"${seq_var}\" '/^[^ ]/ {{p = ($2 + 0 > b)}} p; END {{{then}}}'"
    )


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
