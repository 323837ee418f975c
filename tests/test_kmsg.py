"""The /dev/kmsg parser, on a real dump from the guest (boot, then hello)."""

from __future__ import annotations

from kdk.klog import kmsg

from .conftest import DATA

DUMP = (DATA / "kmsg-boot-hello.txt").read_text()


def test_parses_every_record_and_skips_continuation_lines() -> None:
    records = kmsg.parse(DUMP)
    heads = [ln for ln in DUMP.splitlines() if ln and not ln.startswith(" ")]
    assert len(records) == len(heads)
    assert all(not r.text.startswith(("SUBSYSTEM=", "DEVICE=")) for r in records)
    assert records[0].seq == 0
    assert "Linux version" in records[0].text
    seqs = [r.seq for r in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_levels_and_facility() -> None:
    last = kmsg.parse(DUMP)[-1]
    assert last.text == "hello: hello, world"
    assert last.level == 6  # KERN_INFO
    assert last.facility == 0
    assert last.usec == 10065583


def test_since_keeps_only_newer_records() -> None:
    records = kmsg.parse(DUMP)
    tail = kmsg.since(records, 382)
    assert [r.text.split(":")[0] for r in tail] == ["hello"] * 3
    assert kmsg.since(records, records[-1].seq) == []


def test_format_like_dmesg() -> None:
    rec = kmsg.Record(seq=1, level=6, facility=0, usec=10063583, text="hello: hi")
    assert rec.format() == "[   10.063583] hello: hi"


def test_escaped_bytes_and_bad_lines() -> None:
    text = "6,7,100,-;tab\\x09here\nnot a record\n6,x,1,-;bad seq\n 6,8,1,-;continuation\n"
    records = kmsg.parse(text)
    assert [(r.seq, r.text) for r in records] == [(7, "tab\there")]
