"""The VM state folder: the record, stale pids, and generated keys."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from kdk.state import StateDir, VMRecord, process_alive

REC = VMRecord("qemu", 123, 2222, "6.1.0-56-amd64", "tcg", 1.0, 5.5)


def test_record_round_trip_and_clear(tmp_path: Path) -> None:
    sd = StateDir(tmp_path)
    assert sd.read() is None
    sd.write(REC)
    assert sd.read() == REC
    sd.clear()
    assert sd.read() is None


def test_unreadable_record_reads_as_none(tmp_path: Path) -> None:
    (tmp_path / "vm.json").write_text('{"pid": "half a reco')
    assert StateDir(tmp_path).read() is None
    (tmp_path / "vm.json").write_text('{"pid": 1}')
    assert StateDir(tmp_path).read() is None


def test_alive_needs_the_pid_and_the_marker(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", str(tmp_path)])
    try:
        deadline = time.monotonic() + 10  # until the child has exec'd
        while not process_alive(proc.pid, str(tmp_path)) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert process_alive(proc.pid, str(tmp_path))
        assert not process_alive(proc.pid, "/some/other/state")  # a recycled pid
    finally:
        proc.kill()
        proc.wait()
    assert not process_alive(proc.pid, str(tmp_path))


def test_keys_are_generated_once_and_private(tmp_path: Path) -> None:
    sd = StateDir(tmp_path / "vm")
    sd.ensure_keys()
    key = (tmp_path / "vm" / "id_ed25519").read_bytes()
    assert key.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert os.stat(tmp_path / "vm" / "id_ed25519").st_mode & 0o077 == 0
    assert (tmp_path / "vm" / "ssh_host_ed25519_key.pub").read_text().startswith("ssh-ed25519 ")
    sd.ensure_keys()
    assert (tmp_path / "vm" / "id_ed25519").read_bytes() == key
    known = (tmp_path / "vm" / "known_hosts").read_text()
    assert known.startswith("kdk-guest ssh-ed25519 ")


def test_the_lock_lets_one_holder_in_and_the_next_waits_bounded(tmp_path: Path) -> None:
    sd = StateDir(tmp_path / "vm")
    with sd.lock(timeout=1):
        t = time.monotonic()
        # another process (flock locks are per open file): it gives up in time
        r = subprocess.run(
            [
                sys.executable,
                "-c",
                "from pathlib import Path\n"
                "from kdk.state import StateDir\n"
                f"with StateDir(Path({str(sd.path)!r})).lock(timeout=0.5): pass",
            ],
            capture_output=True,
            text=True,
        )
        assert r.returncode != 0 and "KdkError: another kdk kept" in r.stderr
        assert time.monotonic() - t < 5
    with sd.lock(timeout=0.5):  # released at the end of the block
        pass
