"""Modules not written for kdk, in the VM: a folder of two modules where one
uses the other's export, the same two in two folders of a project, a
prebuilt .ko the guest cannot see, and an init that returns a
kernel-internal errno.

Folders given by path are outside the project; the guest loads the copies
of their .ko files that kdk keeps per kernel in the project's .kdk/builds.
A .ko elsewhere is staged: sent into the guest with the command.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.errors import LoadFailed
from kdk.kernel import host_kernels
from kdk.modules.build import build
from kdk.modules.info import modinfo
from kdk.modules.loading import staged_path
from kdk.project import find_module

from .conftest import kdk_cli
from .usermods import pair, split, unlinked, warns

pytestmark = pytest.mark.vm


def loaded(vm: Kdk) -> set[str]:
    out = vm.exec("cd /sys/module && ls -d kdkprov kdkuser 2>/dev/null; true").stdout
    return set(out.decode().split())


def texts(log: list[str], *wanted: str) -> list[str]:
    """The lines of `log` that are among `wanted`, in their order."""
    return [t for t in log if t in wanted]


def test_the_provider_loads_first_and_unloads_after_its_user(vm: Kdk, tmp_path: Path) -> None:
    folder = pair(tmp_path)
    vm.exec("rmmod kdkuser kdkprov 2>/dev/null; true")
    res = vm.load(str(folder / "kdkuser"))
    log = [r.text for r in res.log]
    assert texts(log, "kdkprov: ready", "kdkuser: 2 + 3 = 5") == [
        "kdkprov: ready",
        "kdkuser: 2 + 3 = 5",
    ]
    assert res.name == "kdkuser" and res.needs == ["kdkprov"]
    assert loaded(vm) == {"kdkprov", "kdkuser"}
    assert vm.exec(["cat", "/sys/module/kdkprov/refcnt"]).stdout == b"1\n"
    # unloading the user also unloads the provider it alone used, after it
    log = [r.text for r in vm.unload(str(folder / "kdkuser")).log]
    assert texts(log, "kdkuser: gone", "kdkprov: gone") == ["kdkuser: gone", "kdkprov: gone"]
    assert loaded(vm) == set()
    # unloading the provider unloads its user first
    vm.load(str(folder / "kdkuser"))
    log = [r.text for r in vm.unload(str(folder / "kdkprov")).log]
    assert texts(log, "kdkuser: gone", "kdkprov: gone") == ["kdkuser: gone", "kdkprov: gone"]
    assert loaded(vm) == set()


def test_a_provider_in_another_folder_is_loaded_from_its_build_for_the_guest_kernel(
    vm: Kdk, scratch: Path
) -> None:
    """kdkuser's folder needs kdkprov, of another folder of the project, which
    was built last for another kernel (as a VM on that kernel leaves it)."""
    guest = vm.backend.require().kernel
    other = next((k for k in host_kernels() if k.release != guest), None)
    if other is None:
        pytest.skip(f"only {guest} is installed: no other kernel to build for")
    prov, _ = split(scratch)
    project = Kdk(project=scratch, state=vm.state, vm=vm.backend.state.path.name)
    build(find_module("prov", scratch), other, vm.state / "builds")
    assert modinfo(prov / "kdkprov.ko")["vermagic"].split()[0] == other.release
    vm.exec("rmmod kdkuser kdkprov 2>/dev/null; true")
    res = project.load("user")
    assert res.needs == ["kdkprov"]
    assert texts([r.text for r in res.log], "kdkprov: ready", "kdkuser: 2 + 3 = 5") == [
        "kdkprov: ready",
        "kdkuser: 2 + 3 = 5",
    ]
    assert loaded(vm) == {"kdkprov", "kdkuser"}
    # the builds live outside this project, so the guest got them staged
    insmodded = vm.exec(["modinfo", "-F", "vermagic", staged_path(prov / "kdkprov.ko")])
    assert insmodded.stdout.decode().split()[0] == guest
    log = [r.text for r in project.unload("user").log]
    assert texts(log, "kdkuser: gone", "kdkprov: gone") == ["kdkuser: gone", "kdkprov: gone"]
    assert loaded(vm) == set()


def test_a_prebuilt_ko_the_guest_cannot_see_is_staged_with_its_provider(
    vm: Kdk, tmp_path: Path
) -> None:
    prebuilt = tmp_path / "prebuilt"
    prebuilt.mkdir()
    for ko in vm.build(str(pair(tmp_path))).modules:
        shutil.copy(ko, prebuilt)
    user = prebuilt / "kdkuser.ko"
    assert not vm.exec(["test", "-e", str(user)]).ok  # outside what the guest shares
    vm.exec("rmmod kdkuser kdkprov 2>/dev/null; true")
    r = kdk_cli("load", str(user))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[-1].endswith("] kdkuser: 2 + 3 = 5")
    assert any(ln.endswith("] kdkprov: ready") for ln in lines)
    assert loaded(vm) == {"kdkprov", "kdkuser"}
    r = kdk_cli("unload", str(user))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1].endswith("] kdkprov: gone")
    assert loaded(vm) == set()


DEFERRED_C = """\
// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>

static int __init deferred_init(void)
{
\treturn -EPROBE_DEFER;
}
module_init(deferred_init);
MODULE_LICENSE("GPL");
"""


def test_an_init_returning_eprobe_defer_is_named(vm: Kdk, tmp_path: Path) -> None:
    (tmp_path / "deferred").mkdir()
    (tmp_path / "deferred" / "Kbuild").write_text("obj-m := deferred.o\n")
    (tmp_path / "deferred" / "deferred.c").write_text(DEFERRED_C)
    with pytest.raises(
        LoadFailed, match=r"^insmod deferred failed: init returned -EPROBE_DEFER \(517\): "
    ):
        vm.load(str(tmp_path / "deferred"))


CRC_C = """\
// SPDX-License-Identifier: GPL-2.0
#include <linux/crc7.h>
#include <linux/module.h>

static int __init kdkcrc_init(void)
{
\tpr_info("kdkcrc: %02x\\n", crc7_be(0, "123456789", 9));
\treturn 0;
}

static void __exit kdkcrc_exit(void)
{
}

module_init(kdkcrc_init);
module_exit(kdkcrc_exit);
MODULE_LICENSE("GPL");
"""


def test_a_kernel_module_it_needs_is_modprobed_first(vm: Kdk, tmp_path: Path) -> None:
    (tmp_path / "kdkcrc").mkdir()
    (tmp_path / "kdkcrc" / "Kbuild").write_text("obj-m := kdkcrc.o\n")
    (tmp_path / "kdkcrc" / "kdkcrc.c").write_text(CRC_C)
    vm.exec("rmmod kdkcrc crc7 2>/dev/null; true")
    res = vm.load(str(tmp_path / "kdkcrc"))  # crc7_be is lib/crc7's, a module of the kernel
    assert res.needs == ["crc7"]
    assert res.log[-1].text == "kdkcrc: ea"  # CRC-7/MMC of "123456789", shifted left by one
    assert vm.exec("test -d /sys/module/crc7").ok
    vm.unload(str(tmp_path / "kdkcrc"))


def test_a_load_that_builds_shows_the_compilers_warnings(vm: Kdk, tmp_path: Path) -> None:
    """The daily loop is `kdk load`: a warning of the build it does is shown
    (file:line), and the load goes on; a load with nothing to build shows
    none."""
    folder = warns(tmp_path)
    r = kdk_cli("load", str(folder))
    assert r.returncode == 0, r.stderr
    assert "/kdkwarns/kdkwarns.c:6:13: warning: unused variable" in r.stderr
    assert r.stdout.strip().endswith("kdkwarns: loaded")
    r = kdk_cli("load", str(folder))
    assert r.returncode == 0 and "warning" not in r.stderr
    assert kdk_cli("unload", str(folder)).returncode == 0


def test_unloading_what_never_built_or_is_no_module_folder_is_one_clear_line(
    vm: Kdk, tmp_path: Path
) -> None:
    """A folder whose build failed at modpost (Kbuild listed the module it
    did not make) is not loaded; `.` that is no module folder says so, as
    `kdk load .` does."""
    folder = unlinked(tmp_path)
    r = kdk_cli("build", str(folder))
    assert r.returncode == 1 and '"kdk_nowhere" [' in r.stderr
    assert (folder / "modules.order").exists() and not (folder / "kdkunlinked.ko").exists()
    r = kdk_cli("unload", str(folder))
    assert (r.returncode, r.stderr) == (
        1,
        "kdk: rmmod kdkunlinked failed: kdkunlinked is not loaded\n",
    )
    r = kdk_cli("unload", ".")  # run from the project's root
    assert r.returncode == 1
    assert r.stderr == "kdk: .: not a module folder (no Kbuild, and no Makefile naming obj-m)\n"
