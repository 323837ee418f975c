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


def test_the_kernels_remarks_on_the_vms_timing_are_set_apart() -> None:
    """The records of the 6.12 guest's `kdk unload hello` that once failed
    hello's test in CI, and perf's remark; a module's own line that looks
    like one, or one written to /dev/kmsg, stays in the log."""
    text = (
        "4,900,5000,-;hrtimer: interrupt took 13806801 ns\n"
        "6,901,5100,-;hello: goodbye, world\n"
        "6,902,5200,-;perf: interrupt took too long (2510 > 2500), lowering "
        "kernel.perf_event_max_sample_rate to 79000\n"
        "6,903,5300,-;mine: hrtimer: interrupt took 5 ns\n"
        "12,904,5400,-;hrtimer: interrupt took 1 ns\n"
    )
    own, timing = kmsg.apart(kmsg.parse(text))
    assert [r.seq for r in own] == [901, 903, 904]
    assert [r.seq for r in timing] == [900, 902]
