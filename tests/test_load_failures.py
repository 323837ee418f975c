"""Loads that fail, in the VM: an init that returns an errno, and one that
has not returned when kdk's bound is over (KDK_INIT_TIMEOUT, 2 s here).

The module is tests/data/initfail.c, built from a folder of this file's
own: its init returns -err, after waiting (wait_ms at most) for a write to
its `release` parameter, which ends the wait when the test wants.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.errors import InitHung, LoadFailed
from kdk.testing import log_mark, log_since, sh

from . import usermods
from .conftest import kdk_cli

pytestmark = pytest.mark.vm

SYSFS = "/sys/module/initfail"


@pytest.fixture(scope="module")
def initfail(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return usermods.initfail(tmp_path_factory.mktemp("modules"))


def initstate(vm: Kdk) -> str:
    """initfail's state in the kernel: coming, live, going; "" when not loaded."""
    return sh(vm, f"cat {SYSFS}/initstate 2>/dev/null; true").strip()


@pytest.mark.parametrize(
    ("err", "name"),
    [(22, "EINVAL"), (12, "ENOMEM"), (16, "EBUSY"), (17, "EEXIST"), (1, "EPERM")],
)
def test_the_errno_init_returned_is_named(vm: Kdk, initfail: Path, err: int, name: str) -> None:
    with pytest.raises(LoadFailed) as exc:
        vm.load(str(initfail), [f"err={err}"])
    assert type(exc.value) is LoadFailed and exc.value.exit_code == 1
    assert str(exc.value) == (
        f"insmod initfail failed: init returned -{name} ({err}) (parameters: err={err})"
    )
    # the kernel log: init ran once (busybox's insmod, after a failed
    # finit_module, tries init_module: the init ran again)
    returns = [ln for ln in exc.value.details.splitlines() if " init returns " in ln]
    assert returns == [f"initfail: init returns -{err}"]
    assert initstate(vm) == ""


def test_kdk_load_shows_the_kernel_log_and_the_errno_and_exits_1(vm: Kdk, initfail: Path) -> None:
    vm.build(str(initfail))  # a build's lines are not part of what is checked
    r = kdk_cli("load", str(initfail), "err=19")
    assert r.returncode == 1, r.stderr
    assert r.stderr.splitlines()[-2:] == [
        "initfail: init returns -19",
        "kdk: insmod initfail failed: init returned -ENODEV (19) (parameters: err=19)",
    ]
    assert initstate(vm) == ""


def test_an_init_that_has_not_returned_is_reported_and_left_to_finish(
    vm: Kdk, initfail: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vm.build(str(initfail))
    monkeypatch.setenv("KDK_INIT_TIMEOUT", "2")
    seq = log_mark(vm)
    try:
        r = kdk_cli("load", str(initfail), "wait_ms=120000")
        assert r.returncode == 5, r.stderr
        lines = r.stderr.splitlines()
        assert lines[-1] == "kdk: initfail's init has not returned after 2 s"
        assert lines[0] == "initfail: init waits 120000 ms at most for release"  # the kernel log
        assert re.fullmatch(r"insmod \(pid \d+\) is in initfail's init, at:", lines[1])
        assert re.fullmatch(r"  initfail_init\+0x\w+/0x\w+ \[initfail\]", lines[2])
        assert any(
            re.fullmatch(r"/proc/modules: initfail \d+ 1 - Loading 0x\w+ \(\w*\+\)", ln)
            for ln in lines
        )
        assert lines[-2].endswith("until the VM is rebooted: kdk down && kdk up")
        assert initstate(vm) == "coming"
        # a second load and an unload say so at once, and leave it as it is
        with pytest.raises(InitHung) as exc:
            vm.load(str(initfail))
        assert str(exc.value) == "initfail's init has not returned since an earlier load"
        assert "  initfail_init+0x" in exc.value.details
        with pytest.raises(InitHung) as exc:
            vm.unload(str(initfail))
        assert str(exc.value) == "initfail cannot be unloaded: its init has not returned"
        assert initstate(vm) == "coming"
    finally:  # the insmod in the guest goes on: its init ends, the module is loaded
        vm.exec(f"echo 1 > {SYSFS}/parameters/release")
    live = f"[ $(cat {SYSFS}/initstate) = live ]"
    waited = sh(vm, f"i=0; until {live} || [ $i = 100 ]; do sleep 0.1; i=$((i + 1)); done; echo $i")
    assert initstate(vm) == "live", f"not live after {waited.strip()} tries"
    log = [r.text for r in vm.unload(str(initfail)).log]
    assert log == ["initfail: unloaded"]
    assert [r.text for r in log_since(vm, seq)][-3:] == [
        "initfail: init waited: released",
        "initfail: init returns 0",
        "initfail: unloaded",
    ]
