"""The spine on a real guest: one VM for the session, real modules.

Every test here boots (once) and talks to a real kernel under QEMU.
"""

from __future__ import annotations

import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from subprocess import PIPE

import pytest

from kdk.api import BootRequest, Kdk
from kdk.errors import GuestHung, KdkError, LoadFailed, VermagicMismatch, VMLost
from kdk.guest import mux
from kdk.modules.info import modinfo
from kdk.state import CMDLINE_FILE, PID_FILE, process_alive
from kdk.testing import (
    guest_cpus,
    log_mark,
    log_since,
    rmmod_quietly,
    session_vm,
    wait_asleep,
    wait_until,
)
from kdk.vm import qemu
from kdk.vm.qemu import BOOT_TIMEOUT

from .conftest import PROJECT, kdk_cli
from .test_build import copy_hello

pytestmark = pytest.mark.vm


def test_up_is_idempotent_and_status_tells_the_truth(vm: Kdk) -> None:
    rec, booted = vm.up()
    assert not booted
    r = kdk_cli("status", "--json")
    assert r.returncode == 0
    info = json.loads(r.stdout)
    assert info["running"] and info["pid"] == rec.pid and info["ssh_port"] == rec.ssh_port
    assert info["accel"] in ("kvm", "tcg") and info["uptime"] > 0
    uname = kdk_cli(
        "exec",
        "--",
        "sh",
        "-c",
        "uname -r; grep -c ^processor /proc/cpuinfo; grep MemTotal /proc/meminfo",
    )
    assert uname.returncode == 0
    release, cpus, _, memory_kib, _ = uname.stdout.split()
    assert (release, cpus) == (info["kernel"], str(info["cpus"]))
    assert (
        0.8 * info["memory_mb"] < int(memory_kib) / 1024 <= info["memory_mb"]
    )  # less the kernel's
    again = kdk_cli("up")
    assert again.returncode == 0 and "already up" in again.stderr
    other = 1 if info["cpus"] > 1 else 2
    asked = kdk_cli("up", "--cpus", str(other), "--memory", str(info["memory_mb"] + 256))
    assert asked.returncode == 0
    has = f"{info['cpus']} CPU{'s' if info['cpus'] > 1 else ''}"
    assert f"the running VM has {has}: `kdk down` first to get {other}" in asked.stderr
    want = info["memory_mb"] + 256
    assert (
        f"the running VM has {info['memory_mb']} MiB: `kdk down` first to get {want}"
        in asked.stderr
    )
    vagrant_only = kdk_cli("up", "--libvirt", "kdk")  # refused, running or not
    assert vagrant_only.returncode != 0
    assert vagrant_only.stderr.startswith("kdk: --libvirt is for the vagrant backend")


def test_exec_streams_output_and_propagates_the_exit_code(vm: Kdk) -> None:
    r = kdk_cli("exec", "--", "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (r.returncode, r.stdout, r.stderr) == (7, "out\n", "err\n")
    assert kdk_cli("exec", "--", "true").returncode == 0
    missing = kdk_cli("exec", "--", "no-such-command")
    assert missing.returncode == 127 and "not found" in missing.stderr


def test_exec_returns_output_that_comes_after_the_exit_status(vm: Kdk) -> None:
    """sshd sends a command's exit status when the command exits, and its
    output ends with the channel's EOF: here a background process writes
    after the shell exited. Waited for (kdk.guest.ssh.TAIL), not forever."""
    assert vm.exec("(sleep 0.3; echo late) & echo early").stdout == b"early\nlate\n"
    started = time.monotonic()
    assert vm.exec("sleep 30 & echo held").stdout == b"held\n"
    assert time.monotonic() - started < 10


def test_exec_forwards_stdin(vm: Kdk) -> None:
    r = kdk_cli("exec", "--", "wc", "-c", input=b"x" * 100000)
    assert r.returncode == 0 and r.stdout.strip() == "100000"


def test_exec_timeout_is_an_error_not_a_hang_and_ends_the_command(vm: Kdk) -> None:
    """What the command started ends with it (dash runs `sleep` as its
    child), and the error comes when the guest ended it, not a host's
    bound later."""
    for command in (["sleep", "31"], ["sh", "-c", "sleep 32 | cat; echo never"]):
        t = time.monotonic()
        r = kdk_cli("exec", "--timeout", "1", "--", *command)
        assert r.returncode == 1 and "did not finish in 1 s" in r.stderr
        assert time.monotonic() - t < 8  # not the host's own bound (1 s + 10 s)
        assert "never" not in r.stdout
        left = vm.exec("ps -e -o args | grep -c '^sleep 3[12]'", timeout=30).stdout.strip()
        assert left == b"0", vm.exec("ps -e -o pid,pgid,args").stdout


def test_a_command_with_a_timeout_runs_the_guest_s_programs_not_busybox_s(vm: Kdk) -> None:
    """The guest's `timeout` is busybox's (quicker to start), whose own sh
    would run busybox's applets: a user's command runs under /bin/sh."""
    r = kdk_cli("exec", "--timeout", "30", "--", "dd", "--version")
    assert r.returncode == 0 and "coreutils" in r.stdout


def test_guest_commands_run_in_a_clean_environment(vm: Kdk) -> None:
    r = vm.exec(["sh", "-c", "echo $HOME; ls -A $HOME; env"])
    lines = r.stdout.decode().splitlines()
    assert lines[0] == "/root"
    assert not any(ln.startswith(("PYENV", "VIRTUAL_ENV")) for ln in lines)
    assert ".bashrc" not in lines


def test_load_prints_exactly_the_lines_of_this_load(vm: Kdk) -> None:
    vm.exec("rmmod hello 2>/dev/null")
    r = kdk_cli("load", "hello")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1].endswith("hello: hello, world")
    assert all(ln.startswith("[") and "] hello: " in ln for ln in lines)
    assert "tainted" not in r.stderr  # O and E, which every out-of-tree module sets, are not news
    assert vm.exec("test -d /sys/module/hello").ok


def test_reload_and_parameters(vm: Kdk) -> None:
    vm.load("hello")
    res = vm.load("hello", ["greeting=hi"])
    texts = [rec.text for rec in res.log]
    assert texts[-2:] == ["hello: goodbye, world", "hello: hi, world"]
    param = vm.exec("cat /sys/module/hello/parameters/greeting").stdout.decode().strip()
    assert param == "hi"


def test_a_marked_tests_module_is_left_unloaded_quietly(vm: Kdk) -> None:
    vm.load("hello")
    rmmod_quietly(vm, "hello")
    assert not vm.exec("test -d /sys/module/hello").ok
    rmmod_quietly(vm, "hello")  # not loaded: nothing said, nothing raised


def test_waiting_for_a_process_to_sleep_somewhere_else_fails_in_time(vm: Kdk) -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError) as err:
        wait_asleep(vm, 1, "kdk_no_such_function", timeout=0.5)
    assert time.monotonic() - started < 10
    where = vm.exec("cat /proc/1/wchan").stdout.decode()  # init waits for its children
    assert str(err.value).startswith(f"process 1 is in {where}, not kdk_no_such_function")


def test_waiting_until_a_guest_condition_holds_is_bounded_and_says_what_it_saw(
    vm: Kdk,
) -> None:
    flag = "/tmp/kdk-wait-until"
    later = f"{{ rm -f {flag}; (sleep 0.3; touch {flag}) >/dev/null 2>&1 & }}"
    assert wait_until(vm, f"[ -e {flag} ]", first=later, show=f"ls {flag}") == f"{flag}\n"
    started = time.monotonic()
    with pytest.raises(AssertionError) as err:
        wait_until(vm, f"[ ! -e {flag} ]", timeout=0.5, show=f"ls {flag}")
    assert time.monotonic() - started < 10
    assert str(err.value).startswith(
        f"still not true after 0.5 s: [ ! -e {flag} ] (ls {flag}: {flag})"
    )
    with pytest.raises(AssertionError, match=r"^'false' failed"):
        wait_until(vm, "true", first="false")


def test_the_log_since_a_mark_is_the_records_made_after_it(vm: Kdk) -> None:
    """(kmsg.apart, which also sets the kernel's remarks on the VM's timing
    aside there, has its test in test_kmsg.py.)"""
    seq = log_mark(vm)
    sh = "for i in 1 2 3; do echo kdk-test: mark $i > /dev/kmsg; done"
    assert vm.exec(sh).ok
    assert [r.text for r in log_since(vm, seq)] == [f"kdk-test: mark {i}" for i in (1, 2, 3)]
    assert log_since(vm, log_mark(vm)) == []


def test_unload_prints_its_lines_and_twice_is_an_error(vm: Kdk) -> None:
    vm.load("hello")
    r = kdk_cli("unload", "hello")
    assert r.returncode == 0 and r.stdout.strip().endswith("hello: goodbye, world")
    again = kdk_cli("unload", "hello")
    assert again.returncode == 1 and "hello is not loaded" in again.stderr
    assert again.stderr.count("\n") == 1


def test_insmod_failure_shows_the_kernels_reason(vm: Kdk) -> None:
    vm.exec("rmmod hello 2>/dev/null")
    with pytest.raises(LoadFailed) as err:
        vm.load("hello", ["greeting"])  # a charp parameter needs a value
    refused = "hello: `' invalid for parameter `greeting'"  # before init ran
    assert str(err.value) == f"insmod hello failed: -EINVAL (22): {refused}"
    assert err.value.details.endswith(refused)


def test_a_module_given_by_path_outside_the_project(vm: Kdk, tmp_path: Path) -> None:
    src = copy_hello(tmp_path, "byhand")
    r = kdk_cli("load", str(src.path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("byhand: hello, world")
    assert kdk_cli("unload", str(src.path)).returncode == 0


def test_a_module_that_does_not_compile(vm: Kdk, tmp_path: Path) -> None:
    src = copy_hello(tmp_path, "broken")
    c = src.path / "broken.c"
    c.write_text(c.read_text().replace("return 0;", "return missing_symbol;"))
    r = kdk_cli("load", str(src.path))
    assert r.returncode == 1
    assert f"{c}:" in r.stderr and "missing_symbol" in r.stderr
    assert (
        r.stderr.strip().splitlines()[-1] == "kdk: broken does not compile (compiler errors above)"
    )


def test_a_module_built_for_another_kernel_is_refused(vm: Kdk, tmp_path: Path) -> None:
    ko = vm.build("hello").main_module("hello")
    release = modinfo(ko)["vermagic"].split()[0]
    other = "9" * len(release)  # same length, so the ELF stays valid
    patched = tmp_path / "hello.ko"
    patched.write_bytes(
        ko.read_bytes().replace(f"vermagic={release}".encode(), f"vermagic={other}".encode())
    )
    with pytest.raises(VermagicMismatch, match=f"built for kernel {other}"):
        vm.load(str(patched))
    r = kdk_cli("load", str(patched))
    assert r.returncode == 1 and "rebuild it" in r.stderr


def test_the_guest_cannot_write_host_files(vm: Kdk) -> None:
    name = f"/etc/kdk-test-{uuid.uuid4().hex}"
    r = vm.exec(["sh", "-c", f"echo guest > {name} && cat {name}"])
    assert r.ok and r.stdout == b"guest\n"  # the overlay takes the write...
    assert not os.path.exists(name)  # ...and the host never sees it
    ro = vm.exec(["sh", "-c", "mount | grep ' / '"]).stdout.decode()
    assert "overlay" in ro


def test_the_project_is_shared_read_write(vm: Kdk) -> None:
    probe = PROJECT / ".kdk" / f"shared-{uuid.uuid4().hex}"
    try:
        assert vm.exec(["sh", "-c", f"echo from-guest > {probe}"]).ok
        assert probe.read_text() == "from-guest\n"
    finally:
        probe.unlink(missing_ok=True)


def test_dmesg_shows_the_boot_log(vm: Kdk) -> None:
    r = kdk_cli("dmesg")
    assert r.returncode == 0 and "Linux version" in r.stdout.splitlines()[0]


def running_in_the_guest(env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`kdk exec` of a 60 s sleep, returned once the command runs in the
    guest (it prints a line first, which is waited for, up to 60 s)."""
    script = "echo running; exec sleep 60"
    argv = [sys.executable, "-m", "kdk.cli", "exec", "--", "sh", "-c", script]
    env = env or dict(os.environ, KDK_VM=session_vm())
    proc = subprocess.Popen(argv, env=env, cwd=PROJECT, stdout=PIPE, stderr=PIPE, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    if not ready or proc.stdout.readline() != "running\n":
        proc.kill()
        pytest.fail(f"kdk exec did not start its command: {proc.communicate()[1]}")
    return proc


def test_a_vm_killed_from_outside_is_lost_then_not_running(vm: Kdk) -> None:
    rec = vm.backend.require()
    proc = running_in_the_guest()
    os.kill(rec.pid, 9)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 255 and "guest lost" in err
    st = kdk_cli("status", "--json")
    assert st.returncode == 3 and json.loads(st.stdout)["running"] is False
    down = kdk_cli("exec", "--", "true")
    assert down.returncode == 1 and "run `kdk up`" in down.stderr


def test_down_stops_the_vm(vm: Kdk) -> None:
    rec = vm.backend.require()
    r = kdk_cli("down")
    assert r.returncode == 0 and "VM stopped" in r.stderr
    assert not process_alive(rec.pid, str(vm.backend.state.path))
    assert kdk_cli("status").stdout.strip() == "not running"


def test_a_panic_is_reported_in_one_block_and_the_next_command_works(vm: Kdk) -> None:
    r = kdk_cli("exec", "--", "sh", "-c", "echo c > /proc/sysrq-trigger")
    assert r.returncode == 4
    lines = r.stderr.strip().splitlines()
    assert "kernel crash: panic in sysrq_handle_crash" in lines
    assert any(ln.startswith("  console log: ") for ln in lines)
    assert lines[-1].startswith("kdk: the guest kernel crashed: panic in sysrq_handle_crash")
    assert kdk_cli("exec", "--", "true").returncode == 0


def test_a_hung_guest_is_replaced(vm: Kdk) -> None:
    rec = vm.backend.require()
    os.kill(rec.pid, signal.SIGSTOP)  # the whole machine stops answering
    r = kdk_cli("exec", "--timeout", "3", "--", "true")
    assert r.returncode == 255 and "the guest hung" in r.stderr
    assert "the VM was booted again" in r.stderr
    again = vm.backend.require()
    assert again.pid != rec.pid and again.cpus == rec.cpus  # booted as it was
    assert kdk_cli("exec", "--", "true").returncode == 0


def test_a_load_that_warns_reports_the_warning_and_the_new_taint(vm: Kdk, tmp_path: Path) -> None:
    if int(vm.exec("cat /proc/sys/kernel/tainted").stdout) & 1 << 9:
        vm.guest_session.reboot(vm.backend.require())  # a W from an earlier test would not be new
    src = copy_hello(tmp_path, "warner")
    c = src.path / "warner.c"
    c.write_text(c.read_text().replace("return 0;", "WARN_ON(1);\n\treturn 0;"))
    r = kdk_cli("load", str(src.path))
    assert r.returncode == 4
    assert "warner: hello, world" in r.stderr  # the load's own lines are kept
    assert "loading warner tainted the kernel: W (kernel issued a warning)" in r.stderr
    assert "kernel warning: WARNING at " in r.stderr and "in hello_init [warner]" in r.stderr
    vm.unload(str(src.path))


def test_a_guest_stopped_during_a_command_without_timeout_is_replaced(vm: Kdk) -> None:
    rec = vm.backend.require()
    assert vm.exec("true").ok  # vm's connection leads to this VM
    env = dict(os.environ, KDK_VM=vm.backend.state.path.name)
    proc = running_in_the_guest(env)
    assert proc.stderr is not None
    try:
        os.kill(rec.pid, signal.SIGSTOP)  # no timeout was given: liveness must notice
        stopped = time.monotonic()
        said = proc.stderr.readline()  # the line that comes before the reboot
        reported = time.monotonic() - stopped
        assert "did not answer" in said and "booting a fresh VM" in said
        assert reported < 30
        rest = proc.communicate(timeout=BOOT_TIMEOUT + 30)[1]
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 255 and "the VM was booted again" in rest
    assert vm.backend.require().pid != rec.pid
    assert vm.exec("true").ok  # its connection led to the old VM: it reconnects


def test_two_ups_at_once_end_with_one_vm(vm: Kdk) -> None:
    kernel = vm.backend.require().kernel
    vm.down()
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: kdk_cli("up", "--kernel", kernel), range(2)))
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    said = sorted(r.stderr.strip().splitlines()[-1].split(":")[1] for r in results)
    assert said[0].startswith(" already up") and said[1].startswith(" ready in"), said
    marker = f"{vm.backend.state.path}/".encode()  # not the debug VM's ({path}-kdk-debug)
    qemus = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _is_qemu_of(p, marker)]
    assert [int(p.name) for p in qemus] == [vm.backend.require().pid]


def test_a_boot_that_stalls_is_booted_once_more(vm: Kdk, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel = vm.backend.require().kernel
    vm.down()
    pid_file, console = vm.backend.state.file(PID_FILE), vm.backend.state.console_log
    stopped: list[int] = []

    def stop_the_first_qemu() -> None:  # a kernel that makes no progress after its start
        deadline = time.monotonic() + 60
        while not stopped and time.monotonic() < deadline:
            try:
                if console.stat().st_size:
                    os.kill(pid := int(pid_file.read_text()), signal.SIGSTOP)
                    stopped.append(pid)
            except (OSError, ValueError):
                pass
            time.sleep(0.01)

    monkeypatch.setattr(qemu, "STALLED", 8.0)
    said: list[str] = []
    watcher = threading.Thread(target=stop_the_first_qemu)
    watcher.start()
    rec, booted = vm.up(BootRequest(kernel, cpus=guest_cpus()), say=said.append)
    watcher.join()
    assert booted and stopped and rec.pid != stopped[0]
    assert not process_alive(stopped[0], str(vm.backend.state.path))  # the stalled one is gone
    assert any("not ready after 8 s" in line and "booting it once more" in line for line in said)
    assert vm.exec("true").ok


def _is_qemu_of(proc: Path, marker: bytes) -> bool:
    try:
        cmdline = (proc / "cmdline").read_bytes()
    except OSError:
        return False
    return cmdline.startswith(qemu.QEMU.encode()) and marker in cmdline


def test_the_vm_keeps_the_command_line_it_was_started_with(vm: Kdk) -> None:
    rec = vm.backend.require()
    argv = shlex.split(vm.backend.state.file(CMDLINE_FILE).read_text())
    assert argv == Path(f"/proc/{rec.pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def test_every_share_reads_ahead_and_the_init_ran_without_an_error(vm: Kdk) -> None:
    """The 9p shares (mounted before and after sshd starts) read mapped
    pages ahead, and the guest's init wrote nothing but its ready line."""
    ahead = vm.exec("cat /sys/class/bdi/9p-*/read_ahead_kb").stdout.decode().split()
    assert len(ahead) >= 3 and set(ahead) == {"256"}, ahead  # the root, project, state, ...
    console = vm.backend.state.console_log.read_text(errors="replace").splitlines()
    assert not [ln for ln in console if not ln.startswith("[") and "kdk-ready" not in ln]


def test_host_files_made_after_up_are_seen_by_the_next_command(vm: Kdk) -> None:
    if not os.access("/opt", os.W_OK):
        pytest.skip("/opt is not writable here: the test makes its files there")
    top = Path("/opt") / f"kdk-test-{uuid.uuid4().hex}"  # where people install tools
    try:
        assert vm.exec(["test", "-e", str(top)]).exit_code == 1
        (top / "folder").mkdir(parents=True)
        (top / "file").write_text("made on the host\n")
        r = vm.exec(["sh", "-c", f"cat {top}/file; test -d {top}/folder && echo folder"])
        assert r.stdout == b"made on the host\nfolder\n"
        assert not vm.exec(["touch", f"{top}/from-guest"]).ok  # seen as it is: read-only
        assert not (top / "from-guest").exists()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_cached_trees_are_read_again_once_the_package_manager_changed_them(
    vm: Kdk, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a tree of the test's stands for /usr/lib/python3, and a file of its
    # own for dpkg's status file (in the state folder: the guest's /tmp is
    # its own), in a VM booted for them (then stopped)
    tree, stamp = tmp_path / "tree", vm.backend.state.path / "test-status"
    tree.mkdir()
    (tree / "module.py").write_text("old\n")
    stamp.write_text("1\n")
    monkeypatch.setattr(qemu, "cached_trees", lambda: (tree,))
    monkeypatch.setattr(qemu, "STAMP", stamp)
    kernel = vm.backend.require().kernel
    vm.down()
    read = ["sh", "-c", f"cat {tree}/module.py; test -e {tree}/new.py && echo new; :"]
    try:
        vm.up(BootRequest(kernel, cpus=guest_cpus()))
        assert vm.exec(read).stdout == b"old\n"
        (tree / "module.py").write_text("NEW\n")
        (tree / "new.py").write_text("")
        # cached: what was read stays (a new name is looked up: it is seen)
        assert vm.exec(read).stdout == b"old\nnew\n"
        stamp.with_name("status-new").write_text("2\n")
        stamp.with_name("status-new").replace(stamp)  # as dpkg writes it
        deadline = time.monotonic() + 10  # the guest looks once a second
        while (seen := vm.exec(read).stdout) != b"NEW\nnew\n":
            assert time.monotonic() < deadline, seen
            time.sleep(0.2)
    finally:
        vm.down()
        stamp.unlink(missing_ok=True)


def test_one_connection_serves_every_command(vm: Kdk) -> None:
    k = Kdk(vm=vm.backend.state.path.name)
    # $PPID of a guest command is sshd's process for its connection
    sshd = {k.exec("echo $PPID").stdout for _ in range(10)}
    assert len(sshd) == 1  # (after a reboot it reconnects: see the stopped-guest test)


@pytest.mark.parametrize("connected", [True, False], ids=["on its connection", "on the master"])
def test_a_guest_agent_answers_then_its_errors_are_one_line(vm: Kdk, connected: bool) -> None:
    wait_for_the_master(vm)
    g = vm.guest()
    if connected:
        g.connect()  # a channel of this connection; else one of the OpenSSH master
    script = "read line; echo '{\"got\": 1}'; read line; echo 'not json'; echo boom >&2; exit 3"
    agent = g.start(["sh", "-c", script], "the test agent")
    assert isinstance(agent, mux.MuxProcess) != connected
    try:
        assert agent.running()
        assert agent.ask({"op": "x"}, 10) == {"got": 1}
        with pytest.raises(KdkError, match="the test agent sent a malformed answer: 'not json'"):
            agent.ask({"op": "y"}, 10)
        with pytest.raises(VMLost, match=r"^the test agent ended: boom$"):
            agent.ask({"op": "z"}, 10)
        assert not agent.running()
        with pytest.raises(VMLost, match=r"^the test agent ended: "):
            agent.ask({"op": "again"}, 10)  # its input is closed: said the same way
    finally:
        agent.close()
        g.close()


def test_a_guest_agent_on_the_master_tells_a_hung_guest(vm: Kdk) -> None:
    rec = vm.backend.require()
    wait_for_the_master(vm)
    agent = vm.guest().start(["sh", "-c", "read line; exec sleep 60"], "the test agent")
    assert isinstance(agent, mux.MuxProcess)
    os.kill(rec.pid, signal.SIGSTOP)  # the whole machine stops answering
    try:
        asked = time.monotonic()
        with pytest.raises(GuestHung, match=r"^guest lost while waiting for the test agent"):
            agent.ask({"op": "x"}, 60)
        assert time.monotonic() - asked < 30  # the master's keepalives, not the 60 s
    finally:
        agent.close()
        vm.guest_session.reboot(rec)
    assert vm.exec("true").ok


def wait_for_the_master(vm: Kdk) -> None:
    """Until the VM's OpenSSH master is logged in (`kdk up` does not wait)."""
    ep, state = vm.backend.endpoint(vm.backend.require()), vm.backend.state.path
    deadline = time.monotonic() + 30
    while not mux.master_alive(ep, state):
        assert time.monotonic() < deadline, "the OpenSSH master did not log in in 30 s"
        time.sleep(0.2)


def test_kdk_exec_processes_share_the_vms_connection(vm: Kdk) -> None:
    wait_for_the_master(vm)
    # the login shell's parent is sshd's process for the connection: the master's
    grandparent = ["sh", "-c", 'cut -d" " -f4 /proc/$PPID/stat']
    first, second = (kdk_cli("exec", "--", *grandparent) for _ in range(2))
    assert first.returncode == second.returncode == 0
    assert first.stdout == second.stdout
