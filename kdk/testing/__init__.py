"""pytest fixtures for tests that run against a kdk guest (a pytest plugin).

Installed with kdk (entry point `pytest11`), so the tests under tests/,
kmods/ and drivers/, and a user's own tests, all get them:

    def test_mine(vm):            # a kdk.api.Kdk whose VM is up
        res = vm.load("hello")
        assert res.log[-1].text == "hello: hello, world"

Mark a test (or a file, with `pytestmark`) with
`@pytest.mark.module("kdkchar", "nr_devs=2")`: the `loaded` fixture loads it,
and it is unloaded after the test either way. A test that needs emulated
devices says so with `@pytest.mark.devices("edu", can=2)` (QEMU -device
specs; `can=N`: a CAN bus with N controllers): the session's one VM is
booted with every device the collected tests ask for, and a test whose
devices a VM that was already up lacks fails saying so. `sh()` and `check_writes()`
are small helpers for guest shell commands and errno checks; `wait_until()`
polls a guest shell condition (bounded), and `wait_asleep()` waits until
a guest process sleeps in a given kernel function (a blocking call on a
device file: `GuestFile.pid`). `log_mark()` and `log_since()` give the
kernel log records a test's commands made. A report of
the kernel's checks (KASAN, lockdep, ...) during a kdk command raises
KernelReport, which fails the test, unless the test expects it:
`with expect_report("lockdep") as found:` around the commands. Packet labs
get `wire`, `net`, `netns_pair` and `netns_bridge` (see kdk.testing.net).
A guest program that tests share (a client with its imports done) is
kept in a `kdk.testing.keep.PerBoot`, which starts it again after a reboot.
A module folder's C file that defines KUnit suites is collected too, one
test per KUnit case (see kdk.testing.kunit).

The VM is the one named by $KDK_VM (`kdk test` sets it to the VM it runs
in), else a VM of the test session's own ("pytest"), booted on first use
and stopped at the end; a VM that was already up is left running. It runs
the kernel $KDK_KERNEL names (a release or a prefix, "6.12"), else the
host's default; the tests skip when that kernel is not installed. Under
pytest-xdist the first worker (gw0) uses that VM and each other worker a
VM of its own (the worker's id added to the name), booted with the same
kernel and the devices the collected tests ask for: `pytest -n 2 --dist
loadfile` runs test files in two VMs at once (`kdk test -j 2` does that).
The VMs a session boots get $KDK_CPUS CPUs each, else (under xdist) the
host's cores shared out among the workers, else kdk's default: under
emulation, VMs whose CPUs outnumber the cores slow each other down.
"""

from __future__ import annotations

import fnmatch
import os
import shlex
from collections import Counter
from collections.abc import Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pytest

from ..api import BootRequest, Kdk
from ..errors import KdkError, KernelReport
from ..inguest import BUSYBOX
from ..kernel import Kernel, select_kernel
from ..klog import kmsg
from ..ui import say
from ..vm import devices
from ..vm.qemu import shared_cpus
from .kunit import kunit_run, pytest_collect_file, pytest_terminal_summary  # noqa: F401 (hooks)
from .net import net, net_agent, netns_bridge, netns_pair, wire  # noqa: F401 (fixtures)

if TYPE_CHECKING:
    from pluggy import Result

TEST_VM = "pytest"
_DEVICES = pytest.StashKey[tuple[str, ...]]()  # what the session's VM boots with
_WAS_UP = pytest.StashKey[bool]()  # whether the session's VM was up before the session


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "vm: needs a kdk guest (booted once per session)")
    config.addinivalue_line(
        "markers", "module(name, *params): loaded by the `loaded` fixture, unloaded after"
    )
    config.addinivalue_line(
        "markers", "devices(*specs, can=N): the VM has these emulated devices (QEMU -device specs)"
    )


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "kdk_expected_skips",
        "skips CI=true lets pass, one per line: TEST-ID-PATTERN: REASON-TEXT",
        type="linelist",
        default=[],
    )
    parser.addini(
        "kdk_same_vm",
        "test files that share one VM under pytest -n N --dist loadfile (kdk test -j N), "
        "one group per line: globs of paths from the rootdir, separated by spaces",
        type="linelist",
        default=[],
    )
    parser.addoption(
        "--kdk-ktap", action="store_true", help="print the KTAP of the KUnit suites run"
    )


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """--dist loadfile, where the files of each group that the ini option
    kdk_same_vm names go to one worker (one VM), one after the other: a
    VM of their own that they boot once (a debug kernel's, whose boot is
    long), or a guest program they all start (bcc, whose start and first
    compile are seconds under emulation)."""
    groups = [line.split() for line in config.getini("kdk_same_vm")]
    if config.getvalue("dist") != "loadfile" or not groups:
        return None
    from xdist.scheduler import LoadFileScheduling

    class Scheduling(LoadFileScheduling):  # type: ignore[misc]  # xdist has no type information
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]  # loadfile's scope: the file
            for group in groups:
                if any(fnmatch.fnmatchcase(path, glob) for glob in group):
                    return " ".join(group)
            return path

    return Scheduling(config, log)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Result[pytest.TestReport], None]:
    """A test that failed of an error of kdk's shows its details (the
    kernel's report, the compiler's messages) in a section of its own.

    Under CI=true a test that needs a VM, a kernel build or a chroot
    (markers vm, kbuild, chroot) and skips fails instead, unless the skip
    is listed in the ini option kdk_expected_skips (an fnmatch pattern of
    test ids, and text its skip reason holds): on a machine of the kind CI
    runs on, such a test that does not run is a test that did not pass."""
    outcome = yield
    rep = outcome.get_result()
    error = call.excinfo.value if call.excinfo else None
    if isinstance(error, KdkError) and error.details:
        rep.sections.append(("kdk: details", error.details))
    if not (rep.skipped and os.environ.get("CI") == "true" and isinstance(rep.longrepr, tuple)):
        return  # (an xfail is a skip whose longrepr is its failure's)
    if not any(item.get_closest_marker(m) for m in ("vm", "kbuild", "chroot")):
        return
    reason = str(rep.longrepr[2]).removeprefix("Skipped: ")
    for line in item.config.getini("kdk_expected_skips"):
        pattern, _, text = line.partition(": ")
        if fnmatch.fnmatchcase(item.nodeid, pattern) and text in reason:
            return
    rep.outcome = "failed"
    rep.longrepr = f"skipped under CI=true, and not a skip kdk_expected_skips lists: {reason}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that uses the session's VM (through any fixture built on
    `kdk_session`) is marked `vm`, so `pytest -m "not vm"` runs the rest.
    The devices the VM boots with are those all these tests ask for."""
    wanted: Counter[str] = Counter()
    for item in items:
        if "kdk_session" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.vm)
            wanted |= Counter(marked_devices(item))
    config.stash[_DEVICES] = tuple(wanted.elements())


def marked_devices(item: pytest.Item) -> tuple[str, ...]:
    """The devices a test's `devices` markers ask for (of the test, its
    class and its module)."""
    return tuple(
        d
        for m in item.iter_markers("devices")
        for d in devices.request(m.args, m.kwargs.get("can", 0))
    )


def session_vm() -> str:
    """The name of the session's VM: $KDK_VM, else "pytest" and the kernel
    $KDK_KERNEL names; under xdist with the worker's id added, but for the
    first worker's (gw0), which uses the VM the name gives."""
    kernel = os.environ.get("KDK_KERNEL", "").replace("/", "_")
    name = os.environ.get("KDK_VM") or "-".join(filter(None, [TEST_VM, kernel]))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return name if worker == "gw0" else f"{name}-{worker}"


def guest_cpus() -> int | None:
    """The CPUs of each VM the session boots: $KDK_CPUS, else under xdist
    the host's cores shared out among the workers, else None (kdk's
    default)."""
    if given := os.environ.get("KDK_CPUS"):
        if not given.isdigit() or int(given) < 1:
            raise KdkError(f"KDK_CPUS={given}: a number of CPUs (1 or more)")
        return int(given)
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return shared_cpus(workers) if workers > 1 else None


@pytest.fixture(scope="session")
def kdk_kernel() -> Kernel:
    """The kernel of the session's VM: $KDK_KERNEL's, else the one it runs
    already (`kdk test` in a VM booted with --kernel), else the host's default."""
    rec = None if os.environ.get("KDK_KERNEL") else Kdk(vm=session_vm()).backend.record()
    try:
        return select_kernel(os.environ.get("KDK_KERNEL") or (rec.kernel if rec else None))
    except KdkError as e:
        pytest.skip(f"no guest kernel: {e}")


@pytest.fixture(scope="session")
def kdk_session(kdk_kernel: Kernel, pytestconfig: pytest.Config) -> Iterator[Kdk]:
    """The session's Kdk; its VM is stopped at the end if the session booted it."""
    k = Kdk(vm=session_vm(), say=say)
    was_up = pytestconfig.stash[_WAS_UP] = k.backend.record() is not None
    yield k
    if not was_up:
        k.down()


@pytest.fixture
def vm(kdk_session: Kdk, kdk_kernel: Kernel, request: pytest.FixtureRequest) -> Kdk:
    """The session's Kdk with its VM up (booted again if a test stopped it),
    with the devices of every collected test when this session boots it
    (again, when a test booted it without them)."""
    wanted: tuple[str, ...] = request.config.stash.get(_DEVICES, ())
    boot = BootRequest(kdk_kernel.release, devices=wanted, cpus=guest_cpus())
    rec = kdk_session.backend.record()
    if rec is None:
        rec, _ = kdk_session.up(boot)
    if rec.kernel != kdk_kernel.release:
        pytest.fail(f"VM {session_vm()} runs {rec.kernel}, not {kdk_kernel.release}", False)
    lacking = devices.missing(marked_devices(request.node), rec.devices)
    if lacking and not request.config.stash.get(_WAS_UP, True):
        say(f"the session's VM has no {devices.describe(lacking)}: booting it with them")
        kdk_session.down()
        rec, _ = kdk_session.up(boot)
        lacking = devices.missing(marked_devices(request.node), rec.devices)
    if lacking:
        pytest.fail(
            f"VM {session_vm()} has no {devices.describe(lacking)} (it was up before "
            f"the session, with {devices.describe(rec.devices)}): `kdk down` it, or "
            "`kdk up` it with those devices",
            False,
        )
    return kdk_session


@pytest.fixture
def loaded(vm: Kdk, request: pytest.FixtureRequest) -> Kdk:
    """`vm` with the module named by the test's `module` marker loaded (with
    the marker's parameters)."""
    marker = request.node.get_closest_marker("module")
    if marker is None:
        raise pytest.UsageError("the `loaded` fixture needs @pytest.mark.module(NAME, *PARAMS)")
    name, *params = marker.args
    vm.load(name, params)
    return vm


@pytest.fixture(autouse=True)
def _unload_marked_module(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test marked @pytest.mark.module(NAME) leaves NAME unloaded."""
    yield
    marker = request.node.get_closest_marker("module")
    if marker is not None and "vm" in request.fixturenames:
        k: Kdk = request.getfixturevalue("kdk_session")
        if k.backend.record() is not None:
            rmmod_quietly(k, marker.args[0])


def rmmod_quietly(k: Kdk, name: str) -> None:
    """rmmod `name` if it is loaded, saying nothing either way: busybox's
    rmmod where the guest has it (~60 ms less a test under TCG than kmod's)."""
    k.exec(f"{BUSYBOX}; $b rmmod {shlex.quote(name)} 2>/dev/null; true")


@contextmanager
def expect_report(check: str) -> Iterator[list[KernelReport]]:
    """A block whose kdk commands make the guest kernel's `check` (KASAN,
    lockdep, sleep in atomic, UBSAN) report: the test fails unless it does.
    The block ends at the command that raised KernelReport (as in
    pytest.raises); the list holds that error afterwards (its details are
    the blocks kdk prints)."""
    found: list[KernelReport] = []
    try:
        yield found
    except KernelReport as e:
        if check not in e.checks:
            raise
        found.append(e)
        return
    pytest.fail(f"the guest kernel made no {check} report", False)


def sh(vm: Kdk, script: str | Sequence[str]) -> str:
    """Run in the guest; the test fails (with the guest's stderr) unless it
    succeeds. Its stdout."""
    res = vm.exec(script)
    assert res.ok, f"{script!r} exited {res.exit_code}: {res.stderr.decode(errors='replace')}"
    return res.stdout.decode()


def log_mark(vm: Kdk) -> int:
    """Where the guest's kernel log ends now (its last record's number),
    for log_since."""
    return vm.dmesg()[-1].seq


def log_since(vm: Kdk, mark: int) -> list[kmsg.Record]:
    """The guest's kernel log records after `mark` (log_mark), without the
    kernel's remarks on the VM's own timing, which under emulation on a busy
    host land in any window (kmsg.VM_TIMING), as a load's log is."""
    return kmsg.apart([r for r in vm.dmesg() if r.seq > mark])[0]


def _poll(vm: Kdk, condition: str, timeout: float, first: str, show: str) -> tuple[bool, str]:
    """Poll the guest shell command `condition` every 50 ms, in one SSH
    command, until it succeeds or `timeout` seconds have gone by: whether
    it did, and the output of `show` run after it. `first` runs before
    (the test fails if it does)."""
    tries = max(1, round(timeout / 0.05))
    res = vm.exec(
        f"{first + ' || exit 97; ' if first else ''}{BUSYBOX}; i=0; held=1; "
        f"until {condition}; do "
        f"if [ $i -ge {tries} ]; then held=0; break; fi; $b sleep 0.05; i=$((i + 1)); done; "
        f"{show or 'true'}; [ $held = 1 ]"
    )
    assert res.exit_code != 97, f"{first!r} failed: {res.stderr.decode(errors='replace')}"
    return res.ok, res.stdout.decode(errors="replace")


def wait_until(
    vm: Kdk, condition: str, timeout: float = 10.0, *, first: str = "", show: str = ""
) -> str:
    """Wait until the guest shell command `condition` succeeds, polled in
    the guest every 50 ms; the test fails when it still does not after
    `timeout` seconds. `first`: a command run once before (the test fails
    if it does); `show`: a command run once after, whose output is
    returned, and quoted in the failure (what things were then)."""
    held, out = _poll(vm, condition, timeout, first, show)
    shown = f" ({show}: {out.strip() or 'nothing'})" if show else ""
    assert held, f"still not true after {timeout} s: {condition}{shown}"
    return out


def wait_asleep(vm: Kdk, pid: int, function: str, timeout: float = 20.0) -> None:
    """Wait until the guest process `pid` sleeps in the kernel function
    `function` (its /proc/PID/wchan), e.g. a driver's read on its wait
    queue; the test fails saying where the process was when that took
    longer than `timeout` seconds."""
    wchan = f"/proc/{pid}/wchan"
    condition = f'[ "$(cat {wchan})" = {shlex.quote(function)} ]'
    held, where = _poll(vm, condition, timeout, "", f"cat {wchan}")
    assert held, f"process {pid} is in {where.strip() or 'no wait'}, not {function}"


# Each (path, hex data) pair of argv: open(O_WRONLY), one write(2), close;
# prints the byte count written, or -errno.
_WRITES = """
import os, sys
args = sys.argv[1:]
for path, data in zip(args[::2], args[1::2]):
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as e:
        print(-e.errno)
        continue
    try:
        print(os.write(fd, bytes.fromhex(data)))
    except OSError as e:
        print(-e.errno)
    finally:
        os.close(fd)
"""


def check_writes(vm: Kdk, cases: Sequence[tuple[str, bytes, int]]) -> None:
    """Each (path, data, expected) is one write(2) on its own open file in
    the guest; expected is the byte count written, or -errno. One python3
    process does them all (each guest process costs time under emulation)."""
    argv = ["python3", "-c", _WRITES]
    for path, data, _ in cases:
        argv += [path, data.hex()]
    got = [int(line) for line in sh(vm, argv).split()]
    assert [(p, d, g) for (p, d, _), g in zip(cases, got, strict=True)] == list(cases)
