"""The words of a failed load, built without a VM: the errno an init
returned, a parameter the kernel refused, and a module whose init has not
returned (from a report a guest script wrote, stored in tests/data). And
the test module of the VM tests (tests/test_load_failures.py) builds
cleanly."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from kdk.errors import InitHung, KdkError, LoadFailed
from kdk.kernel import Kernel, host_kernels
from kdk.modules import loading
from kdk.modules.build import compiler_output
from kdk.modules.errnos import insmod_reason
from kdk.modules.loading import Insmod

from .conftest import DATA
from .usermods import initfail

INSERT = "insmod: ERROR: could not insert module /m/initfail.ko: "
TARGET = Insmod("initfail", "/m/initfail.ko")
STUCK = (DATA / "load-stuck-stderr.txt").read_text()  # a guest's report, as it wrote it


@pytest.mark.parametrize(
    ("words", "said"),
    [
        ("Invalid parameters", "-EINVAL (22)"),  # kmod's own words for EINVAL
        ("Cannot allocate memory", "-ENOMEM (12)"),
        ("No such device", "-ENODEV (19)"),
        ("Device or resource busy", "-EBUSY (16)"),
        ("File exists", "-EEXIST (17)"),
        ("Operation not permitted", "-EPERM (1)"),
        ("Operation not supported", "-EOPNOTSUPP (95)"),  # Python's name is ENOTSUP
        ("Unknown error 1000", "-1000"),
    ],
)
def test_the_errno_init_returned_is_named(words: str, said: str) -> None:
    assert insmod_reason(INSERT + words, ["initfail: init returns"]) == f"init returned {said}"


@pytest.mark.parametrize(
    ("given", "kernel"),
    [
        ("greeting=good day", 'greeting="good day"'),  # one value, not `day` a parameter
        ("greeting=tab\there", 'greeting="tab\there"'),
        ('greeting="already quoted"', 'greeting="already quoted"'),
        ("count=3", "count=3"),
        ("verbose", "verbose"),  # a bool set by its name
    ],
)
def test_a_value_with_white_space_reaches_the_kernel_as_one(given: str, kernel: str) -> None:
    assert loading.kernel_param(given) == kernel


def test_parameters_are_named_only_when_some_were_given() -> None:
    assert insmod_reason(INSERT + "Invalid parameters", [], ["err=22", "wait_ms=0"]) == (
        "init returned -EINVAL (22) (parameters: err=22 wait_ms=0)"
    )
    err = loading.load_error(1, TARGET, [], INSERT + "Invalid parameters", ["a line"], [])
    assert type(err) is LoadFailed and err.exit_code == 1
    assert (str(err), err.details) == (
        "insmod initfail failed: init returned -EINVAL (22)",
        "a line",
    )
    # a provider's failure does not name the target's parameters
    prov = Insmod("kdkprov", "/m/kdkprov.ko")
    err = loading.load_error(110, TARGET, [prov], INSERT + "No such device", [], ["err=1"])
    assert str(err) == "insmod kdkprov (needed by initfail) failed: init returned -ENODEV (19)"


@pytest.mark.parametrize(
    "line",
    [
        "params: `abc' invalid for parameter `count'",
        "values: can only take 8 arguments",
        "initfail: Unknown parameter `nope'",
        "initfail: disagrees about version of symbol module_layout",
    ],
)
def test_what_the_kernel_refused_before_init_is_the_reason(line: str) -> None:
    log = ["loading out-of-tree module taints kernel.", line]
    assert insmod_reason(INSERT + "Invalid parameters", log, ["x=1"]) == f"-EINVAL (22): {line}"


def test_a_module_built_against_another_build_of_the_kernel_is_told_so() -> None:
    """kdkedu.ko linked before the debug kernel was built again (the lines
    of that real load)."""
    log = [
        "kdkedu: loading out-of-tree module taints kernel.",
        "BPF: \t type_id=126 bits_offset=4480",
        "BPF: Invalid name",
        "failed to validate module [kdkedu] BTF: -22",
    ]
    assert insmod_reason(INSERT + "Invalid parameters", log) == (
        "-EINVAL (22): failed to validate module [kdkedu] BTF: -22 "
        "(built against another build of this kernel: build it again)"
    )


def test_a_kernel_internal_errno_is_explained_after_the_parameters() -> None:
    reason = insmod_reason(INSERT + "Unknown error 517", [], ["err=517"])
    assert reason.startswith("init returned -EPROBE_DEFER (517) (parameters: err=517): a resource")


def test_rmmod_and_insmod_s_own_failures_keep_their_words() -> None:
    assert insmod_reason(
        "rmmod: ERROR: could not remove module x: Device or resource busy", []
    ) == ("Device or resource busy")
    assert insmod_reason(INSERT + "Invalid module format", []) == (
        "Invalid module format (-ENOEXEC (8))"
    )
    missing = "insmod: ERROR: could not load module /m/x.ko: No such file or directory"
    assert insmod_reason(missing, []) == "No such file or directory"


BUSYBOX_INSERT = "insmod: can't insert '/m/initfail.ko': "


@pytest.mark.parametrize(
    ("words", "params", "said"),
    [
        ("Invalid argument", ["err=22"], "init returned -EINVAL (22) (parameters: err=22)"),
        ("No such device", [], "init returned -ENODEV (19)"),
        ("Unknown error 517", [], "init returned -EPROBE_DEFER (517): a resource"),
        # busybox's own words for ENOENT: an init that returned it, or a symbol
        ("unknown symbol in module, or unknown parameter", [], "init returned -ENOENT (2)"),
        ("invalid module format", [], "Invalid module format (-ENOEXEC (8))"),
        ("No such file or directory", [], BUSYBOX_INSERT + "No such file or directory"),
    ],
)
def test_busybox_s_insmod_words_name_the_same_errno_as_kmod_s(
    words: str, params: list[str], said: str
) -> None:
    """The guest's insmod is busybox's where it has one (one program
    started, not kmod's with libcrypto): its words, from busybox 1.35."""
    assert insmod_reason(BUSYBOX_INSERT + words, [], params).startswith(said)


def test_busybox_s_unknown_symbol_and_rmmod_words() -> None:
    log = ["initfail: Unknown symbol kdkprov_add (err -2)"]
    unknown = BUSYBOX_INSERT + "unknown symbol in module, or unknown parameter"
    assert insmod_reason(unknown, log) == (
        "Unknown symbol in module: kdkprov_add (exported by no loaded module)"
    )
    busy = "rmmod: can't unload module 'x': Resource temporarily unavailable"
    err = loading.unload_error(1, "x", busy, [])
    assert str(err) == "rmmod x failed: the module is in use (delete_module: -EAGAIN (11))"
    gone = "rmmod: can't unload module 'x': Device or resource busy"
    assert insmod_reason(gone, []) == "Device or resource busy"


def test_an_init_that_has_not_returned_is_told_with_its_stack_and_what_to_do() -> None:
    err = loading.load_error(loading.INIT_HUNG, TARGET, [], STUCK, ["initfail: init waits"], [])
    assert isinstance(err, InitHung) and err.exit_code == 5
    assert str(err) == "initfail's init has not returned after 2 s"
    lines = err.details.splitlines()
    assert lines[:4] == [
        "initfail: init waits",  # the kernel log first
        "insmod (pid 281) is in initfail's init, at:",
        "  initfail_init+0x5e/0x1000 [initfail]",
        "  do_one_initcall+0x56/0x220",
    ]
    assert "/proc/modules: initfail 28672 1 - Loading 0xffffffffc0235000 (OE+)" in lines
    assert lines[-1].endswith("until the VM is rebooted: kdk down && kdk up")


def test_a_load_or_unload_of_a_module_still_in_its_init_says_so() -> None:
    earlier = STUCK.replace("kdk-stuck initfail 2", "kdk-stuck initfail")
    err = loading.load_error(loading.INIT_HUNG, TARGET, [], earlier, [], ["err=1"])
    assert str(err) == "initfail's init has not returned since an earlier load"
    assert err.details.startswith("insmod (pid 281) is in initfail's init, at:\n")
    err = loading.unload_error(loading.INIT_HUNG, "initfail", earlier, [])
    assert isinstance(err, InitHung)
    assert str(err) == "initfail cannot be unloaded: its init has not returned"
    err = loading.unload_error(1, "x", "rmmod: ERROR: could not remove module x: Busy", [])
    assert type(err) is LoadFailed and str(err) == "rmmod x failed: Busy"


def test_no_task_in_the_init_is_said() -> None:
    _, _, details = loading.stuck_details("kdk-stuck m 60\nkdk-module m 1 0 - Loading 0x0 (O+)\n")
    assert details.splitlines()[:2] == [
        "no insmod or modprobe has m's init on its kernel stack",
        "/proc/modules: m 1 0 - Loading 0x0 (O+)",
    ]


def test_the_bound_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KDK_INIT_TIMEOUT", raising=False)
    assert loading.init_timeout() == 60
    assert loading.script_timeout(2) == 2 * 60 + loading.SCRIPT_TIMEOUT
    assert "\nT=60\n" in loading.load_script(TARGET, [], [], [], False)
    monkeypatch.setenv("KDK_INIT_TIMEOUT", "2.5")
    assert "\nT=2.5\n" in loading.load_script(TARGET, [], [], [], False)
    for bad in ("0", "-1", "abc", "inf", "nan"):
        monkeypatch.setenv("KDK_INIT_TIMEOUT", bad)
        with pytest.raises(KdkError, match=f"^KDK_INIT_TIMEOUT={bad}: not a number of seconds"):
            loading.init_timeout()


def test_where_a_scripts_time_went_comes_from_its_marks() -> None:
    script = loading.load_script(TARGET, [], [], [], False)
    marks = [m.group(1) for m in re.finditer(r"echo kdk-time ('[^']+'|\S+) ", script)]
    assert marks == ["start", "'log position'", "'what it needs'", "rmmod", "insmod", "'log read'"]
    out = "kdk-time start 10.00\n6,1,2,-;x\nkdk-time rmmod 10.25\nkdk-time insmod 10.75\n"
    assert loading.guest_times(out) == [("rmmod", 0.25), ("insmod", 0.5)]
    assert loading.guest_times("") == []


def test_the_scripts_are_valid_for_dash() -> None:
    """The guest runs the host's /bin/sh: dash, on Debian."""
    prov = Insmod("kdkprov", "/m/kdkprov.ko")
    scripts = [
        loading.load_script(TARGET, [prov], ["crc7"], ["err=1"], True),
        loading.unload_script("initfail", ["user"], ["kdkprov"]),
    ]
    for script in scripts:
        res = subprocess.run(["dash", "-n"], input=script, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr


@pytest.mark.kbuild
@pytest.mark.parametrize("kernel", host_kernels(), ids=lambda k: k.release)
def test_initfail_builds_without_a_warning_also_with_w1(kernel: Kernel, tmp_path: Path) -> None:
    folder = initfail(tmp_path)
    argv = ["make", "-C", str(kernel.build_dir), f"M={folder}", "W=1", "modules"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    output = compiler_output(proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0 and output == "", output
    assert (folder / "initfail.ko").is_file()
