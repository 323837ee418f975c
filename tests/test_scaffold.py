"""`kdk new`: the folders it makes build without warnings (also W=1) and
their generated tests pass in the VM as generated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.kernel import Kernel, host_kernels


def kdk_in(
    folder: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The `kdk` command run in `folder`, as a user there would."""
    return subprocess.run(
        [sys.executable, "-m", "kdk.cli", *args],
        cwd=folder,
        env=dict(os.environ, **(env or {})),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_new_makes_the_files_and_refuses_what_exists(tmp_path: Path) -> None:
    r = kdk_in(tmp_path, "new", "mymod")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "mymod").iterdir()) == [
        "Kbuild",
        "Makefile",
        "mymod.c",
        "test_mymod.py",
    ]
    assert "MODULE_LICENSE" in (tmp_path / "mymod" / "mymod.c").read_text()
    again = kdk_in(tmp_path, "new", "mymod", "--char")
    assert again.returncode == 1 and again.stderr.count("\n") == 1
    assert "exists: kdk new only makes a new folder" in again.stderr
    inside = kdk_in(tmp_path / "mymod", "new", "inner")
    assert inside.returncode == 1 and "is a module folder" in inside.stderr
    bad = kdk_in(tmp_path, "new", "my-mod")
    assert bad.returncode == 1 and "cannot name a module" in bad.stderr
    assert not (tmp_path / "my-mod").exists()


@pytest.mark.kbuild
@pytest.mark.parametrize("kernel", host_kernels(), ids=lambda k: k.release)
@pytest.mark.parametrize("kind", [[], ["--char"]], ids=["module", "char"])
def test_new_modules_build_without_warnings_also_with_w1(
    tmp_path: Path, kernel: Kernel, kind: list[str]
) -> None:
    assert kdk_in(tmp_path, "new", "fresh", *kind).returncode == 0
    make = subprocess.run(
        ["make", f"KDIR={kernel.build_dir}", "W=1"],
        cwd=tmp_path / "fresh",
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = make.stdout + make.stderr
    assert make.returncode == 0 and (tmp_path / "fresh" / "fresh.ko").exists(), out
    assert "warning" not in out.lower(), out


@pytest.mark.vm
def test_generated_tests_pass_in_the_vm(vm: Kdk, scratch: Path) -> None:
    env = {
        "KDK_PROJECT": str(scratch),
        "KDK_STATE": str(vm.state),
        "KDK_VM": vm.backend.state.path.name,
    }
    for args in (["mymod"], ["mydev", "--char"]):
        assert kdk_in(scratch, "new", *args, env=env).returncode == 0
    listed = kdk_in(scratch, "list", env=env)
    assert [ln.split()[0] for ln in listed.stdout.splitlines()] == ["mydev", "mymod"]
    r = kdk_in(scratch, "test", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.startswith("my")}
    assert "2 passed, 0 failed" in summary["mydev"] and "1 passed, 0 failed" in summary["mymod"]
