"""The guest side of kdk.trace.bpf: compile and attach one BPF program with bcc,
then answer requests for its tables, as JSON lines.

Runs in the guest under /usr/bin/python3 (Debian's python3-bpfcc lives in
the system's site-packages). The first line on stdin is the job:

    {"text": C source, "cflags": [...],
     "kprobes": [[event, fn], ...], "kretprobes": [[event, fn], ...],
     "tracepoints": [["category:event", fn], ...], "tables": [names]}

The first line out is {"attached": [...], "skipped": [[event, reason]...],
"seconds": compile+attach time}, or {"error": kind, "detail": text}. Then
each "tables" (a JSON string) in gets {"tables": {name: [[key, value],
...]}} back; "stop" gets the same and ends the program.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from typing import Any


def fail(kind: str, detail: str) -> None:
    print(json.dumps({"error": kind, "detail": detail}), flush=True)
    sys.exit(0)


def plain(v: Any) -> Any:
    """A bcc table key or value as JSON: numbers, lists, dicts, strings."""
    if isinstance(v, ctypes.Structure | ctypes.Union):
        return {name: plain(getattr(v, name)) for name, *_ in v._fields_}
    if isinstance(v, ctypes.Array):
        if v._type_ is ctypes.c_char:
            return bytes(v).split(b"\0", 1)[0].decode(errors="replace")
        return [plain(x) for x in v]
    if isinstance(v, bytes):
        return v.split(b"\0", 1)[0].decode(errors="replace")
    return getattr(v, "value", v)


def main() -> None:
    job = json.loads(sys.stdin.readline())
    release = os.uname().release
    if not os.path.isdir(f"/lib/modules/{release}/build"):
        fail("headers", f"/lib/modules/{release}/build is missing")
    started = time.monotonic()
    try:
        from bcc import BPF
    except ImportError as e:
        fail("bcc", str(e))
    try:
        b = BPF(text=job["text"], cflags=job.get("cflags", []))
    except Exception as e:  # bcc raises a bare Exception for compile errors
        fail("compile", str(e))
    attached, skipped = [], []
    attach = [(b.attach_kprobe, "p", ev, fn) for ev, fn in job.get("kprobes", [])]
    attach += [(b.attach_kretprobe, "r", ev, fn) for ev, fn in job.get("kretprobes", [])]
    for how, kind, event, fn in attach:
        try:
            how(event=event, fn_name=fn)
            attached.append(f"{kind}:{event}")
        except Exception as e:
            skipped.append([f"{kind}:{event}", str(e).strip() or type(e).__name__])
    for tp, fn in job.get("tracepoints", []):
        try:
            b.attach_tracepoint(tp=tp, fn_name=fn)
            attached.append(f"t:{tp}")
        except Exception as e:
            skipped.append([f"t:{tp}", str(e).strip() or type(e).__name__])
    out = {"attached": attached, "skipped": skipped, "seconds": time.monotonic() - started}
    print(json.dumps(out), flush=True)
    for line in sys.stdin:
        tables = {n: [[plain(k), plain(v)] for k, v in b[n].items()] for n in job["tables"]}
        print(json.dumps({"tables": tables}), flush=True)
        if json.loads(line) == "stop":
            break


main()
