"""The guest side of kdk.trace.bpf: compile and attach BPF programs with bcc,
then answer requests for their tables, as JSON lines.

Runs in the guest under /usr/bin/python3 (Debian's python3-bpfcc lives in
the system's site-packages) as a server that stays up: started with
`--serve PREFIX`, it listens on the unix socket PREFIX.sock, writes its
pid to PREFIX.pid once it listens, and imports bcc once. Each connection
(kdk.trace.bpf relays one SSH channel to it with `nc -U`) is one program:

    {"text": C source, "cflags": [...],
     "kprobes": [[event, fn], ...], "kretprobes": [[event, fn], ...],
     "tracepoints": [["category:event", fn], ...], "tables": [names],
     "clear": [every map's name] if all can be emptied for a reuse, else null}

The first line out is {"attached": [...], "skipped": [[event, reason]...],
"seconds": compile+attach time, "times": [[phase, seconds], ...],
"reused": whether the compiled program was reused}, or {"error": kind,
"detail": text, "stderr": clang's messages}. Then each "tables" (a JSON
string) in gets {"tables": {name: [[key, value], ...]}} back; "stop" gets
the same and ends the connection; so does the end of its input. Then the
probes are detached; a program with "clear" is kept compiled, those maps
emptied, for the next job with the same text and cflags (the kernel cannot
change under a running server). "stop" is answered before that is done
(detaching takes ~1 s under TCG); a job for the same program that comes
meanwhile waits for it, and finds the program kept.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import sys
import tempfile
import threading
import time
from typing import Any

KEEP = 8  # compiled programs kept for reuse
RELEASE_WAIT = 30.0  # longest wait of a job for its program's release


class Failed(Exception):
    """A job that cannot run: its kind, detail and clang's messages."""

    def __init__(self, kind: str, detail: str, stderr: str = "") -> None:
        super().__init__(detail)
        self.answer = {"error": kind, "detail": detail, "stderr": stderr}


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


class Server:
    """bcc, imported once, and the compiled programs no job uses now."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # one compile at a time (fd 2 is redirected)
        self.idle: list[tuple[tuple[str, tuple[str, ...]], Any]] = []
        # programs whose stopped job still detaches its probes (~1 s under
        # TCG for 16): a job for one of them waits to reuse it
        self.releasing: list[tuple[str, tuple[str, ...]]] = []
        self.released = threading.Condition(self.lock)
        self.bpf: Any = None
        self.import_error = ""
        self.imported = threading.Event()

    def import_bcc(self) -> None:
        try:
            from bcc import BPF

            self.bpf = BPF
        except ImportError as e:
            self.import_error = str(e)
        self.imported.set()

    def compiled(self, job: dict[str, Any]) -> tuple[Any, bool, float]:
        """A compiled program for the job (a kept one when there is one),
        whether it was reused, and the seconds waiting for bcc's import."""
        key = key_of(job)
        waited = time.monotonic()
        self.imported.wait()
        waited = time.monotonic() - waited
        if self.bpf is None:
            raise Failed("bcc", self.import_error)
        with self.lock:
            self.released.wait_for(lambda: key not in self.releasing, RELEASE_WAIT)
            for i, (k, b) in enumerate(self.idle):
                if k == key:
                    del self.idle[i]
                    return b, True, waited
            with tempfile.TemporaryFile() as err:
                saved = os.dup(2)
                os.dup2(err.fileno(), 2)
                try:
                    return self.bpf(text=job["text"], cflags=job.get("cflags", [])), False, waited
                except Exception as e:  # bcc raises a bare Exception for compile errors
                    err.seek(0)
                    raise Failed("compile", str(e), err.read().decode(errors="replace")) from None
                finally:
                    os.dup2(saved, 2)
                    os.close(saved)

    def will_release(self, job: dict[str, Any]) -> None:
        """Say that `release` of the job's program comes (a job for the
        same program waits for it)."""
        with self.lock:
            self.releasing.append(key_of(job))

    def release(self, job: dict[str, Any], b: Any, attached: list[tuple[str, str]]) -> None:
        """Detach a finished job's probes; keep its program for reuse with
        its maps emptied when the job says they all can be ("clear"), else
        free it."""
        try:
            self._release(job, b, attached)
        finally:
            with self.lock:
                if key_of(job) in self.releasing:
                    self.releasing.remove(key_of(job))
                self.released.notify_all()

    def _release(self, job: dict[str, Any], b: Any, attached: list[tuple[str, str]]) -> None:
        for kind, event in attached:
            try:
                if kind == "p":
                    b.detach_kprobe(event)
                elif kind == "r":
                    b.detach_kretprobe(event)
                else:
                    b.detach_tracepoint(event)
            except Exception:  # a module unloaded meanwhile took its probes along
                pass
        if job.get("clear") is None:
            b.cleanup()
            return
        for name in job["clear"]:
            b[name].clear()
        with self.lock:
            self.idle.append((key_of(job), b))
            while len(self.idle) > KEEP:
                self.idle.pop(0)[1].cleanup()


def key_of(job: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """What makes two jobs' programs the same: their text and cflags."""
    return job["text"], tuple(job.get("cflags", []))


def attach(b: Any, job: dict[str, Any]) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """Attach every probe of the job that can be: (kind, event) of those
    attached ("p", "r", "t"), and [event, reason] of those skipped."""
    attached: list[tuple[str, str]] = []
    skipped: list[list[str]] = []
    todo = [(b.attach_kprobe, "p", ev, fn) for ev, fn in job.get("kprobes", [])]
    todo += [(b.attach_kretprobe, "r", ev, fn) for ev, fn in job.get("kretprobes", [])]
    for how, kind, event, fn in todo:
        try:
            how(event=event, fn_name=fn)
            attached.append((kind, event))
        except Exception as e:
            skipped.append([f"{kind}:{event}", str(e).strip() or type(e).__name__])
    for tp, fn in job.get("tracepoints", []):
        try:
            b.attach_tracepoint(tp=tp, fn_name=fn)
            attached.append(("t", tp))
        except Exception as e:
            skipped.append([f"t:{tp}", str(e).strip() or type(e).__name__])
    return attached, skipped


def serve(server: Server, conn: socket.socket) -> None:
    """One connection: one job, its tables on request, then its end."""
    with conn, conn.makefile("rb") as rfile, conn.makefile("wb") as wfile:

        def say(answer: dict[str, Any]) -> None:
            wfile.write(json.dumps(answer).encode() + b"\n")
            wfile.flush()

        line = rfile.readline()
        if not line:
            return
        job = json.loads(line)
        started = time.monotonic()
        release = os.uname().release
        try:
            if not os.path.isdir(f"/lib/modules/{release}/build"):
                raise Failed("headers", f"/lib/modules/{release}/build is missing")
            b, reused, waited = server.compiled(job)
        except Failed as e:
            say(e.answer)
            return
        compiled = time.monotonic()
        released = False
        attached, skipped = attach(b, job)
        done = time.monotonic()
        times = [
            ["waiting for bcc's import", waited],
            [
                "reusing the compiled program" if reused else "clang compile",
                compiled - started - waited,
            ],
            ["attach", done - compiled],
        ]
        try:
            say(
                {
                    "attached": [f"{kind}:{event}" for kind, event in attached],
                    "skipped": skipped,
                    "seconds": done - started,
                    "times": times,
                    "reused": reused,
                }
            )
            for request in rfile:
                tables = {n: [[plain(k), plain(v)] for k, v in b[n].items()] for n in job["tables"]}
                if json.loads(request) == "stop":  # answered before the probes are
                    released = True  # detached (a job right after waits to reuse it)
                    server.will_release(job)
                    try:
                        say({"tables": tables})
                    finally:
                        server.release(job, b, attached)
                    break
                say({"tables": tables})
        except OSError:  # the host went away
            pass
        finally:
            if not released:
                server.release(job, b, attached)


def main(prefix: str) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(prefix + ".sock")
    except OSError:  # another server was started at the same moment: it serves
        return
    listener.listen(16)
    with open(prefix + ".pid.new", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(prefix + ".pid.new", prefix + ".pid")
    server = Server()
    threading.Thread(target=server.import_bcc, daemon=True).start()
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(server, conn), daemon=True).start()


if sys.argv[1:2] == ["--serve"]:
    main(sys.argv[2])
