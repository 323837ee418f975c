"""The ini option kdk_same_vm (kdk.testing): under `pytest -n N --dist
loadfile` the files of one group run in one worker (one VM), the others
are handed out as loadfile does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TEST = """
import os
from pathlib import Path

def test_where():
    Path(__file__).with_suffix(".worker").write_text(os.environ["PYTEST_XDIST_WORKER"])
"""
INI = """[pytest]
kdk_same_vm =
    test_a.py test_b*.py sub/test_c.py
"""
GROUP = ["test_a", "test_b1", "test_b2", "sub/test_c"]
OTHERS = ["test_d", "test_e", "test_f", "test_g"]


def test_a_groups_files_run_in_one_worker(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    for name in GROUP + OTHERS:
        (tmp_path / f"{name}.py").write_text(TEST)
    (tmp_path / "pytest.ini").write_text(INI)
    env = {n: v for n, v in os.environ.items() if not n.startswith("PYTEST_")}
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2"]
    r = subprocess.run(
        [*argv, "--dist", "loadfile", "--import-mode=importlib"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    worker = {n: (tmp_path / f"{n}.worker").read_text() for n in GROUP + OTHERS}
    assert len({worker[n] for n in GROUP}) == 1, worker
    assert set(worker.values()) == {"gw0", "gw1"}  # the other files went to both
