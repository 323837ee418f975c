"""kdk installed from a wheel into a fresh venv, used in a folder that is not
kdk's checkout, on a module written in the classic Makefile style.

This is what a user does: `pip install` kdk, `cd` to their module, `kdk up`,
`kdk load .`, then `kdk new` and `kdk test`. The wheel is built from a copy
of the package's sources (so nothing in the checkout changes), installed
without `-e` into a venv made by the system's python3, and only its `kdk`
binary is run, in the user's folders. They are under /tmp, where the guest
has a tmpfs: the project is mounted on top of it at the same path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdk.testing import TEST_VM

from .conftest import PROJECT
from .usermods import CLASSIC_LINE, classic

pytestmark = pytest.mark.vm


def run(
    argv: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{argv} exited {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def installed_kdk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `kdk` binary of a fresh venv holding kdk's wheel."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(PROJECT / "kdk", src / "kdk", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT / name, src / name)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(root / "dist"),
            str(src),
        ]
    )
    (wheel,) = (root / "dist").glob("kdk-*.whl")
    run(["/usr/bin/python3", "-m", "venv", str(root / "venv")])
    run([str(root / "venv/bin/pip"), "install", "-q", "--disable-pip-version-check", str(wheel)])
    return root / "venv/bin/kdk"


@pytest.fixture
def user_env() -> dict[str, str]:
    """The environment of a user: no kdk variables but the VM's name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDK_")}
    return dict(env, KDK_VM=os.environ.get("KDK_VM") or TEST_VM)


def test_wheel_in_a_fresh_venv_works_in_a_project_of_its_own(
    installed_kdk: Path, user_env: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "mydrivers"
    project.mkdir()
    (project / "kdk.toml").write_text("")  # marks the project's top
    folder = classic(project)
    kdk = str(installed_kdk)
    assert not Path(kdk).resolve().is_relative_to(PROJECT)
    try:
        run([kdk, "up"], cwd=folder, env=user_env)
        assert (project / ".kdk" / "vms" / user_env["KDK_VM"]).is_dir()  # the project's state
        r = run([kdk, "load", "-v", "."], cwd=folder, env=user_env)
        assert f"ran its make in {folder}: make -s" in r.stderr
        assert any(ln.endswith(f"] {CLASSIC_LINE}") for ln in r.stdout.splitlines()), r.stdout
        again = run([kdk, "load", "-v", "classic"], cwd=project, env=user_env)
        assert "make not run" in again.stderr  # unchanged: the build stamp skips make
        # the templates and the pytest plugin come with the wheel
        run([kdk, "new", "mymod"], cwd=project, env=user_env)
        tested = run([kdk, "test", "mymod"], cwd=project, env=user_env)
        assert "1 passed, 0 failed" in tested.stdout
    finally:
        subprocess.run([kdk, "down"], cwd=folder, env=user_env, timeout=120)
