"""Under CI=true a skipped test that needs a VM, a kernel build or a chroot
fails the run, unless kdk_expected_skips lists it (kdk.testing)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import pytest

TESTS = """
import pytest

@pytest.mark.vm
def test_vm_unlisted():
    pytest.skip("no guest kernel: none here")

@pytest.mark.kbuild
@pytest.mark.skipif(True, reason="no headers")
def test_kbuild_unlisted():
    pass

@pytest.mark.vm
def test_vm_listed():
    pytest.skip("needs a thing this kind of machine lacks")

@pytest.mark.vm
def test_vm_listed_for_another_reason():
    pytest.skip("something else")

def test_pure():
    pytest.skip("pure tests may skip")

@pytest.mark.vm
@pytest.mark.xfail(reason="a known bug")
def test_vm_xfail():
    assert False
"""
INI = """[pytest]
kdk_expected_skips =
    *::test_vm_listed*: this kind of machine lacks
"""


def outcomes(junit: Path) -> dict[str, str]:
    """Each test's outcome (passed, skipped, failure, error) from a JUnit file."""
    got = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        tags = [child.tag for child in case if child.tag in ("skipped", "failure", "error")]
        got[case.attrib["name"]] = tags[0] if tags else "passed"
    return got


@pytest.mark.parametrize("ci", ["true", ""])
def test_unexpected_skips_fail_under_ci(tmp_path: Path, ci: str) -> None:
    (tmp_path / "test_x.py").write_text(TESTS)
    (tmp_path / "pytest.ini").write_text(INI)
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--junit-xml=out.xml"]
    env = dict(os.environ, CI=ci)
    r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == (1 if ci else 0), r.stdout
    unlisted = "failure" if ci else "skipped"
    assert outcomes(tmp_path / "out.xml") == {
        "test_vm_unlisted": unlisted,
        "test_kbuild_unlisted": "error" if ci else "skipped",  # skipped at setup: an error
        "test_vm_listed": "skipped",
        "test_vm_listed_for_another_reason": unlisted,
        "test_pure": "skipped",
        "test_vm_xfail": "skipped",  # an expected failure is no skip
    }
    if ci:
        assert "and not a skip kdk_expected_skips lists: no guest kernel: none here" in r.stdout
