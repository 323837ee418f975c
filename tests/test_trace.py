"""kdk trace and kdk.trace.bpf: parsers and rendering, then real bcc in the guest."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments.init_time import init_times
from experiments.kdkchar_sizes import size_histograms
from kdk.api import Kdk
from kdk.errors import KdkError, MissingDependency
from kdk.testing import session_vm
from kdk.trace.bpf import (
    Probes,
    _job_error,
    clearable,
    histogram_text,
    log2_bucket,
    table_names,
)
from kdk.trace.functions import (
    FunctionStats,
    TraceResult,
    format_result,
    module_functions,
    program_text,
)

from .conftest import DATA, PROJECT, kdk_cli

KALLSYMS = (DATA / "kallsyms-kdkchar.txt").read_text()


def test_module_functions_are_text_symbols_one_per_address() -> None:
    functions, skipped = module_functions(KALLSYMS, "kdkchar")
    assert functions == sorted(
        [
            "kdkchar_devnode",
            "kdkchar_open",
            "kdkchar_ioctl",
            "kdkchar_teardown_dev",
            "kdkchar_exit",
            "kdkchar_write",
            "kdkchar_read",
            "kdkchar_poll",
        ]
    )
    assert "cleanup_module" not in functions  # the alias of kdkchar_exit
    assert "nr_devs" not in functions and "kdkchar_fops" not in functions  # data
    assert skipped == []
    assert module_functions(KALLSYMS, "hello") == ([], [])


def test_split_parts_are_skipped_with_a_reason() -> None:
    text = (
        "ffffffffc0000000 t trigger_write.cold\t[faulty]\nffffffffc0000100 t faulty_crash\t[faulty]"
    )
    functions, skipped = module_functions(text, "faulty")
    assert functions == ["faulty_crash"]
    assert skipped[0][0] == "trigger_write.cold" and "compiler-split" in skipped[0][1]


def test_one_program_for_all_functions() -> None:
    text = program_text(3)
    probes = [line for line in text.splitlines() if line.startswith("PROBE(")]
    assert probes == ["PROBE(0)", "PROBE(1)", "PROBE(2)"]
    assert table_names(text) == ["start", "stats", "latency"]


def test_log2_buckets_and_histogram_text() -> None:
    assert [log2_bucket(s) for s in (0, 1, 2, 5)] == [(0, 0), (1, 1), (2, 3), (16, 31)]
    text = histogram_text({1: 2, 3: 4}, "nsecs").splitlines()
    assert text[0].split() == ["nsecs", ":", "count", "distribution"]
    assert text[1].split()[:5] == ["1", "->", "1", ":", "2"]
    assert text[2].split()[:5] == ["2", "->", "3", ":", "0"]  # empty slots are shown
    assert text[3].endswith("|" + "*" * 30 + "|")
    assert histogram_text({}, "nsecs").strip() == "(no events)"


def test_result_table_and_json() -> None:
    result = TraceResult(
        "m",
        [FunctionStats("m_read", 4, 8000, {12: 4}), FunctionStats("m_write", 10, 5000)],
        [("m_exit", "not traceable")],
        6.5,
    )
    table = format_result(result, hist=True).splitlines()
    assert table[0].split() == ["FUNCTION", "CALLS", "TOTAL", "us", "AVG", "us"]
    assert table[1].split() == ["m_write", "10", "5.0", "0.50"]  # most called first
    assert table[2].split() == ["m_read", "4", "8.0", "2.00"]
    assert "skipped m_exit: not traceable" in table
    assert any(line.split()[:3] == ["2048", "->", "4095"] for line in table)  # slot 12
    data = result.as_json()
    assert data["functions"][0] == {
        "name": "m_read",
        "calls": 4,
        "total_ns": 8000,
        "hist": {"12": 4},
        "avg_ns": 2000.0,
    }
    assert data["skipped"] == [{"function": "m_exit", "reason": "not traceable"}]


def test_guest_side_errors_name_what_to_install() -> None:
    bcc = _job_error("bcc", "No module named 'bcc'", "")
    assert isinstance(bcc, MissingDependency) and "bpfcc-tools and python3-bpfcc" in str(bcc)
    headers = _job_error("headers", "/lib/modules/6.1.0-56-amd64/build is missing", "")
    assert "install linux-headers-6.1.0-56-amd64" in str(headers)
    compile_error = _job_error("compile", "Failed to compile BPF module <text>", "x.c:3: error")
    assert compile_error.details == "x.c:3: error"


def test_a_program_is_kept_compiled_only_when_all_its_maps_can_be_emptied() -> None:
    assert clearable(program_text(3)) == ["start", "stats", "latency"]
    perf = "BPF_HASH(counts, u32, u64);\nBPF_PERF_OUTPUT(events);\nint f(void *c) { return 0; }"
    assert clearable(perf) is None
    assert clearable("int f(void *c) { return 0; }") == []


def test_nc_missing_in_the_guest_names_its_package() -> None:
    error = _job_error("nc", "no nc in the guest", "")
    assert isinstance(error, MissingDependency) and "netcat-openbsd" in str(error)


# -- in the guest ----------------------------------------------------------

WRITES = 37
WORKLOAD = f"for i in $(seq {WRITES}); do printf x > /dev/kdkchar0; done"


@pytest.mark.vm
def test_traced_counts_are_exact_and_match_funccount(vm: Kdk) -> None:
    vm.load("kdkchar")
    vm.exec("echo x > /dev/kdkchar0; head -c 2 /dev/kdkchar0 > /dev/null")  # a warm-up, not traced
    out = Path(f"/tmp/kdk-funccount-{time.time_ns()}")
    # bcc's own funccount, started first in the guest, counts the same calls
    # A background job of a script ignores SIGINT; funccount needs it back to
    # print its counts when interrupted.
    start = (
        "import os, signal; signal.signal(signal.SIGINT, signal.SIG_DFL); "
        "os.execvp('funccount-bpfcc', ['funccount-bpfcc', 'kdkchar_write'])"
    )
    vm.exec(f'PYTHONUNBUFFERED=1 python3 -c "{start}" > {out} 2>&1 & echo $! > {out}.pid')
    deadline = time.monotonic() + 120
    while b"Tracing" not in vm.exec(["cat", str(out)]).stdout:
        assert time.monotonic() < deadline, "funccount-bpfcc did not start"
        time.sleep(1)
    r = kdk_cli("trace", "kdkchar", "--json", "--", "sh", "-c", WORKLOAD, timeout=600)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    calls = {f["name"]: f["calls"] for f in result["functions"]}
    assert calls["kdkchar_write"] == WRITES
    assert calls["kdkchar_open"] == WRITES  # one open per redirection
    assert calls["kdkchar_ioctl"] == 0
    vm.exec(f"kill -INT $(cat {out}.pid); sleep 2")
    report = vm.exec(["cat", str(out)]).stdout.decode()
    counted = re.search(r"kdkchar_write\s+(\d+)", report)
    assert counted is not None, report
    assert int(counted.group(1)) == WRITES  # bcc's own tool agrees with kdk
    skipped = {s["function"] for s in result["skipped"]}
    assert set(calls) | skipped == set(
        module_functions(vm.exec("cat /proc/kallsyms").stdout.decode(), "kdkchar")[0]
    )


@pytest.mark.vm
def test_a_second_trace_reuses_the_program_and_counts_only_its_own_calls(vm: Kdk) -> None:
    """The guest keeps the compiled program between traces: the second one
    is not compiled again, and its counters start from zero."""
    vm.load("kdkchar")
    for writes in (3, 5):
        with vm.trace("kdkchar") as t:
            vm.exec(f"for i in $(seq {writes}); do printf x > /dev/kdkchar0; done")
            calls = {f.name: f.calls for f in t.snapshot(final=True).functions}
        assert calls["kdkchar_write"] == writes and calls["kdkchar_open"] == writes
        assert calls["kdkchar_ioctl"] == 0
    assert t.prog.reused  # (the first may be reused too: an earlier test compiled it)


@pytest.mark.vm
def test_ctrl_c_from_a_terminal_ends_the_trace_with_its_counts(vm: Kdk) -> None:
    """A terminal's Ctrl-C goes to the whole process group of `kdk trace`,
    its SSH clients included: the trace still ends with its table."""
    vm.load("kdkchar")
    env = dict(os.environ, KDK_VM=session_vm())
    argv = [sys.executable, "-m", "kdk.cli", "trace", "kdkchar", "--json"]
    with subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=PROJECT,
        start_new_session=True,  # its own group, as a terminal's foreground job
    ) as p:
        try:
            assert p.stderr is not None
            lines: list[str] = []
            while not lines or "Ctrl-C ends the trace" not in lines[-1]:
                lines.append(p.stderr.readline().decode())
                assert lines[-1], "".join(lines)
            vm.exec("printf x > /dev/kdkchar0; printf y > /dev/kdkchar0")
            os.killpg(p.pid, signal.SIGINT)
            out, err = p.communicate(timeout=60)
        finally:
            p.kill()
    assert p.returncode == 0, "".join(lines) + err.decode()
    calls = {f["name"]: f["calls"] for f in json.loads(out)["functions"]}
    assert calls["kdkchar_write"] == 2 and calls["kdkchar_open"] == 2


@pytest.mark.vm
def test_trace_errors_are_one_line(vm: Kdk) -> None:
    vm.exec("rmmod kdkmisc 2>/dev/null; true")
    r = kdk_cli("trace", "kdkmisc", "--duration", "1")
    assert (
        r.returncode == 1
        and r.stderr.strip() == "kdk: kdkmisc is not loaded: run `kdk load kdkmisc` first"
    )
    r = kdk_cli("trace", "nosuchmodule", "--duration", "1")
    assert r.returncode == 1 and "no such module 'nosuchmodule'" in r.stderr
    assert r.stderr.count("\n") == 1
    assert vm.exec("true").ok  # and the VM goes on


@pytest.mark.vm
def test_a_program_that_does_not_compile_shows_clangs_errors(vm: Kdk) -> None:
    bad = "int on_x(struct pt_regs *ctx) { return undefined_name; }"
    with (
        pytest.raises(KdkError, match="does not compile in the guest") as err,
        vm.bpf(bad, Probes()),
    ):
        pass
    assert "undefined_name" in err.value.details and "error" in err.value.details


@pytest.mark.vm
def test_experiment_kdkchar_sizes(vm: Kdk) -> None:
    workload = (
        "printf 1234567 > /dev/kdkchar0; head -c 3 /dev/zero > /dev/kdkchar0; "
        "dd if=/dev/kdkchar0 bs=64 count=1 iflag=nonblock 2>/dev/null"
    )
    hist = size_histograms(vm, workload)
    assert hist["write"] == {3: 1, 2: 1}  # 7 bytes: slot 3 (4..7); 3 bytes: slot 2 (2..3)
    assert hist["read"] == {7: 1}  # 64 bytes asked for: slot 7 (64..127)


@pytest.mark.vm
def test_experiment_init_time(vm: Kdk) -> None:
    times = init_times(vm, ["hello", "kdkmisc"])
    assert set(times) == {"hello", "kdkmisc"}
    assert all(loads == 1 and ns > 0 for loads, ns in times.values())


def test_experiments_run_as_scripts_need_a_vm() -> None:
    script = str(PROJECT / "experiments" / "init_time.py")
    env = {"KDK_VM": "not-up", "PATH": "/usr/bin"}
    r = subprocess.run([sys.executable, script], capture_output=True, text=True, env=env)
    assert r.returncode == 1 and r.stderr == "kdk: the VM is not up: run `kdk up`\n"


def test_bcc_attach_errors_lose_their_preamble() -> None:
    from kdk.trace.functions import _reason

    error = (
        "Failed to attach BPF program b'enter_1' to kprobe b'kdkchar_exit', "
        "it's not traceable (either non-existing, inlined, or marked as notrace)"
    )
    assert _reason(error).startswith("it's not traceable")
    assert _reason("something else") == "something else"
