"""KUnit without a VM: KTAP as the debug kernel printed it (tests/data,
captured from `kdk load` of drivers/kdkchar's kdkchar_kunit and of
tests/data/kunit_fail), runs that ended early, the suites read from C,
which kernels can run them, and how pytest collects them."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import cast

import pytest

from kdk import testrun
from kdk.errors import MissingDependency, UnknownModule
from kdk.kernel import Kernel
from kdk.klog import kmsg, ktap
from kdk.klog.ktap import NO_RESULT, Status, ktap_lines, parse
from kdk.modules import kunit
from kdk.modules.build import main_module
from kdk.modules.loader import Loader, LoadResult
from kdk.project import find_module
from kdk.vm import qemu

from .conftest import DATA, PROJECT

KDKCHAR_C = PROJECT / "drivers/kdkchar/kdkchar_kunit.c"
FAIL_C = DATA / "kunit_fail.c"
BUILT_AT = "/work/wt/kunit/tests/data/kunit_fail/kunit_fail.c"  # in the stored KTAP
RING_CASES = (
    "read_of_empty_ring_gets_nothing",
    "write_to_empty_ring_is_one_span",
    "write_stores_what_fits",
    "write_to_full_ring_stores_nothing",
    "partial_read_leaves_the_rest",
    "read_to_empty_resets_head",
    "write_wraps_around_the_end",
    "read_wraps_around_the_end",
    "bytes_come_out_in_order_across_the_end",
    "clear_empties_the_ring",
    "replace_keeps_bytes_in_order",
)


def log(name: str) -> list[str]:
    return (DATA / name).read_text().splitlines()


def summary(t: ktap.Test) -> tuple[str, str, int, str]:
    return (t.name, t.status.value, t.number, t.reason)


def test_a_passing_suite_gives_each_case_its_result() -> None:
    (suite,) = parse(log("ktap-kdkchar-kdk-debug.log"))
    assert summary(suite) == ("kdkchar_ring", "pass", 1, "")
    assert [summary(c) for c in suite.subtests] == [
        (name, "pass", n, "") for n, name in enumerate(RING_CASES, 1)
    ]
    # the kernel's line before the KTAP, and KUnit's counts, are nobody's log
    assert suite.log == () and all(c.log == () for c in suite.subtests)


def test_failures_keep_their_diagnostics_skips_their_reason_and_parameters_nest() -> None:
    (suite,) = parse(log("ktap-kunit-fail-kdk-debug.log"))
    assert summary(suite) == ("kdk_kunit_fail", "fail", 1, "")
    passes, fails, skips, odd = suite.subtests
    assert summary(passes) == ("passes", "pass", 1, "")
    assert summary(fails) == ("fails", "fail", 2, "")
    assert fails.log == (
        f"# fails: EXPECTATION FAILED at {BUILT_AT}:20",
        "Expected answer == 42, but",
        "    answer == 41",
    )
    assert summary(skips) == ("skips", "skip", 3, "no hardware here")
    assert summary(odd) == ("odd", "fail", 4, "")
    assert [summary(p) for p in odd.subtests] == [
        ("value 1", "pass", 1, ""),
        ("value 2", "fail", 2, ""),
        ("value 3", "pass", 3, ""),
    ]
    assert odd.subtests[1].log[0] == f"# odd: EXPECTATION FAILED at {BUILT_AT}:41"
    assert odd.failure() == "\n".join(
        [
            "fail: value 2",
            f"    # odd: EXPECTATION FAILED at {BUILT_AT}:41",
            "    Expected *v % 2 == 1, but",
            "        *v % 2 == 0",
        ]
    )


def test_a_run_that_ended_mid_suite_has_its_missing_cases_crashed() -> None:
    lines = log("ktap-kdkchar-kdk-debug.log")
    cut = lines.index("    ok 5 partial_read_leaves_the_rest") + 1
    (suite,) = parse(lines[:cut])
    assert summary(suite) == ("kdkchar_ring", "crash", 1, NO_RESULT)
    assert [c.status for c in suite.subtests] == [Status.PASS] * 5 + [Status.CRASH] * 6
    assert summary(suite.subtests[5]) == ("test 6", "crash", 6, NO_RESULT)


def test_a_run_that_ended_inside_a_parameterized_case_names_it() -> None:
    lines = log("ktap-kunit-fail-kdk-debug.log")
    (suite,) = parse(lines[: lines.index("        ok 1 value 1") + 1])
    assert [summary(c) for c in suite.subtests] == [
        ("passes", "pass", 1, ""),
        ("fails", "fail", 2, ""),
        ("skips", "skip", 3, "no hardware here"),
        ("odd", "crash", 4, NO_RESULT),
    ]
    assert [summary(p) for p in suite.subtests[3].subtests] == [("value 1", "pass", 1, "")]


def test_a_log_without_ktap_has_no_tests() -> None:
    assert parse(["kunit: disabled"]) == []
    assert ktap_lines(["kdkchar_kunit: loading out-of-tree module taints kernel."]) == []


def test_the_ktap_of_a_load_starts_at_its_version_line() -> None:
    lines = log("ktap-kdkchar-kdk-debug.log")
    assert ktap_lines(lines) == lines[1:]
    assert lines[1] == "    KTAP version 1" and lines[-1] == "ok 1 kdkchar_ring"


def test_the_kernels_own_parser_agrees_on_every_case() -> None:
    """tools/testing/kunit/kunit_parser.py of the source tree `kdk kernel
    build` unpacked (when there is one) gives the same case results."""
    tool = Path.home() / ".cache/kdk/sources/linux-source-6.1/tools/testing/kunit"
    if not (tool / "kunit_parser.py").exists():
        pytest.skip(f"no kernel source tree with kunit_parser.py at {tool}")
    script = (
        "import sys, kunit_parser\n"
        "t = kunit_parser.parse_run_tests(open(sys.argv[1]).read().splitlines())\n"
        "for s in t.subtests:\n"
        "    for c in s.subtests: print('RESULT', s.name, c.name, c.status.name)\n"
    )
    kernel_word = {"SUCCESS": "pass", "FAILURE": "fail", "SKIPPED": "skip"}
    for name in ("ktap-kdkchar-kdk-debug.log", "ktap-kunit-fail-kdk-debug.log"):
        out = subprocess.run(
            [sys.executable, "-c", script, str(DATA / name)],
            cwd=tool,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        theirs = [ln.split(" ", 3)[1:] for ln in out.splitlines() if ln.startswith("RESULT ")]
        ours = [[s.name, c.name, c.status.value] for s in parse(log(name)) for c in s.subtests]
        assert [[s, c, kernel_word[w]] for s, c, w in theirs] == ours


def test_suites_and_cases_are_read_from_the_c() -> None:
    assert kunit.suites(KDKCHAR_C) == [kunit.Suite("kdkchar_ring", RING_CASES)]
    assert kunit.suites(FAIL_C) == [
        kunit.Suite("kdk_kunit_fail", ("passes", "fails", "skips", "odd"))
    ]
    assert kunit.module_of(KDKCHAR_C) == "kdkchar_kunit"
    kdkchar = find_module("kdkchar", PROJECT)
    assert testrun.test_files(kdkchar) == [kdkchar.path / "test_kdkchar.py", KDKCHAR_C]
    assert testrun.test_files(find_module("kdkchar_kunit", PROJECT)) == [KDKCHAR_C]
    assert not kunit.defines_suites(PROJECT / "drivers/kdkchar/kdkchar.c")


def test_only_a_kernel_with_kunit_runs_suites_and_boots_with_it_enabled(tmp_path: Path) -> None:
    def kernel(release: str, config: str) -> Kernel:
        (tmp_path / f"config-{release}").write_text(config)
        return Kernel(release, tmp_path / f"vmlinuz-{release}", tmp_path / release)

    debug = kernel("6.1.192-kdk-debug", "CONFIG_KUNIT=y\nCONFIG_KUNIT_DEBUGFS=y\n")
    distro = kernel("6.1.0-57-amd64", "# CONFIG_KUNIT is not set\n")
    assert kunit.unavailable(debug) is None
    assert kunit.unavailable(distro) == (
        f"kernel 6.1.0-57-amd64 has no KUnit (CONFIG_KUNIT is not set in "
        f"{tmp_path}/config-6.1.0-57-amd64); `kdk up --kernel debug` boots one that has"
    )
    assert qemu.kunit_cmdline(debug) == ["kunit.enable=1"]
    assert qemu.kunit_cmdline(distro) == []


class StandInLoader:
    """What kunit.run uses of a Loader: a kernel, a load whose kernel log
    is given (KTAP records may hold several lines), an unload."""

    def __init__(self, kernel: Kernel, log: list[str]) -> None:
        self.kernel, self.log, self.calls = kernel, log, list[str]()

    def target_kernel(self) -> Kernel:
        return self.kernel

    def load(self, spec: str) -> LoadResult:
        self.calls.append(f"load {spec}")
        records = [kmsg.Record(n, 6, 0, n, text) for n, text in enumerate(self.log)]
        return LoadResult(spec.rsplit("/", 1)[-1], None, records, False)

    def unload(self, spec: str) -> LoadResult:
        self.calls.append(f"unload {spec}")
        return LoadResult(spec, None, [], False)


def test_a_run_loads_reads_its_ktap_and_unloads(tmp_path: Path) -> None:
    (tmp_path / "config-k").write_text("CONFIG_KUNIT=y\n")
    kernel = Kernel("k", tmp_path / "vmlinuz-k", tmp_path / "k")
    text = (DATA / "ktap-kunit-fail-kdk-debug.log").read_text()
    # the kernel logs an expectation failure as one record of three lines
    lines = text.splitlines()
    at = lines.index("    Expected answer == 42, but")
    records = [*lines[: at - 1], "\n".join(lines[at - 1 : at + 2]), *lines[at + 2 :]]
    loader = StandInLoader(kernel, records)
    run = kunit.run(cast(Loader, loader), "d/kunit_fail")
    assert loader.calls == ["load d/kunit_fail", "unload d/kunit_fail"]
    assert run.module == "kunit_fail" and run.printed == text.splitlines()
    assert run.suites == parse(text.splitlines())
    disabled = StandInLoader(kernel, ["kunit: disabled"])
    with pytest.raises(
        MissingDependency, match=r"^KUnit is disabled in the guest .*kunit.enable=1"
    ):
        kunit.run(cast(Loader, disabled), "d/kunit_fail")
    (tmp_path / "config-k").write_text("# CONFIG_KUNIT is not set\n")
    with pytest.raises(MissingDependency, match="has no KUnit"):
        kunit.run(cast(Loader, StandInLoader(kernel, [])), "d/kunit_fail")


def test_a_module_its_folder_did_not_build_is_not_replaced_by_another(tmp_path: Path) -> None:
    kos = [tmp_path / "kdkchar.ko"]
    assert main_module(kos, "kdkchar") == kos[0]
    with pytest.raises(UnknownModule, match=r"^kdkchar_kunit was not built .* made kdkchar\)"):
        main_module(kos, "kdkchar_kunit", named=True)


def run_tests(
    argv: list[str], junit: Path, **env: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, tuple[str, str]]]:
    """A pytest or kdk command line with `--junit...` to `junit`, run as a
    user runs it (environment `env` added, CI only when `env` sets it);
    its result and its JUnit: testcase name -> (outcome, message)."""
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "KDK_KERNEL")}
    res = subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=PROJECT,
        env=dict(base, **env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    cases = {}
    for case in ET.parse(junit).iter("testcase") if junit.exists() else ():
        child = next(iter(case), None)
        outcome = "passed" if child is None else child.tag
        message = "" if child is None else child.get("message", "")
        cases[f"{case.get('classname')}::{case.get('name')}"] = (outcome, message)
    return res, cases


def test_on_a_kernel_without_kunit_each_case_skips_saying_why(tmp_path: Path) -> None:
    """pytest collects the C file, one test per case; on the distribution
    kernel every case skips with the reason, with no VM booted; under
    CI=true too, as pyproject.toml's kdk_expected_skips lists them."""
    release = next(
        (p.name.removeprefix("config-") for p in sorted(Path("/boot").glob("config-6.1.*"))), None
    )
    if release is None:
        pytest.skip("no 6.1 kernel in /boot")
    junit = tmp_path / "junit.xml"
    res, cases = run_tests(
        ["pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", str(KDKCHAR_C)],
        junit,
        KDK_KERNEL=release,
        KDK_VM="kunit-never-booted",
        CI="true",
    )
    assert res.returncode == 0, res.stdout
    reason = (
        f"kernel {release} has no KUnit (CONFIG_KUNIT is not set in /boot/config-{release}); "
        "`kdk up --kernel debug` boots one that has"
    )
    assert cases == {
        f"drivers.kdkchar.kdkchar_kunit.c::kdkchar_ring[{n}]": ("skipped", reason)
        for n in RING_CASES
    }
    assert not (PROJECT / ".kdk/vms/kunit-never-booted").exists()


def test_a_suite_kdk_cannot_read_is_a_collection_error(tmp_path: Path) -> None:
    """Not zero tests that nobody notices."""
    (tmp_path / "Kbuild").write_text("obj-m += odd_kunit.o\n")
    (tmp_path / "odd_kunit.c").write_text("#include <kunit/test.h>\nkunit_test_suites(SUITES);\n")
    res, _ = run_tests(
        ["pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "odd_kunit.c")],
        tmp_path / "none.xml",
    )
    assert res.returncode == 2, res.stdout
    assert (
        "odd_kunit.c registers KUnit suites, but kdk reads no suite with cases in it" in res.stdout
    )
