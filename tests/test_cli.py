"""The command line, where no VM is needed: errors are one line, exit codes right."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdk.cli import parser

from .conftest import kdk_cli


def test_exec_keeps_the_command_after_the_separator() -> None:
    args = parser().parse_args(["exec", "--timeout", "3", "--", "ls", "-l", "/"])
    assert args.command == ["--", "ls", "-l", "/"] and args.timeout == 3


def test_load_takes_module_parameters() -> None:
    args = parser().parse_args(["load", "hello", "greeting=hi", "n=2"])
    assert (args.module, args.params) == ("hello", ["greeting=hi", "n=2"])


@pytest.mark.parametrize("bad", [["frobnicate"], ["up", "--accel", "xen"]])
def test_usage_errors_exit_2(bad: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        parser().parse_args(bad)
    assert e.value.code == 2


def test_unknown_module_is_one_line_and_lists_modules() -> None:
    r = kdk_cli("build", "nosuch")
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1
    assert "unknown module 'nosuch'" in r.stderr and "hello" in r.stderr


def test_list_shows_hello_with_its_description() -> None:
    r = kdk_cli("list")
    assert r.returncode == 0
    assert any(
        ln.split()[:1] == ["kmods/hello"] and "Hello world" in ln for ln in r.stdout.splitlines()
    )


def test_list_in_a_project_without_modules_says_so(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()  # the project's root
    env = dict(os.environ, KDK_VM="not-up")
    argv = [sys.executable, "-m", "kdk.cli", "list"]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert (r.returncode, r.stdout) == (0, "")
    assert r.stderr == (
        f"kdk: no module folders in {tmp_path} (a Kbuild, or a Makefile naming obj-m): "
        "kdk new NAME\n"
    )


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["up", "--ssh-port", "99999", "--dry-run"], "--ssh-port 99999: not a TCP port (1-65535)"),
        (
            ["trace", "kdkchar", "--duration", "-1"],
            "--duration -1: not a number of seconds 0 or more",
        ),
        (["wire", "--duration", "-2"], "--duration -2: not a number of seconds 0 or more"),
        (
            ["exec", "--timeout", "-1", "--", "true"],
            "--timeout -1: not a number of seconds above 0",
        ),
        (["exec"], "nothing to run: kdk exec -- COMMAND [ARG...]"),
        (["load", "hello", "--fail-nth", "0"], "--fail-nth 0: N counts from 1"),
        (["kernel", "remove"], "which kernel? kdk kernel remove NAME (see kdk kernel list)"),
    ],
)
def test_arguments_kdk_cannot_use_are_usage_errors_before_any_work(
    argv: list[str], line: str
) -> None:
    """One line, exit 2 as for argparse's own usage errors."""
    r = kdk_cli(*argv)
    assert (r.returncode, r.stdout, r.stderr) == (2, "", f"kdk: {line}\n")


def test_load_asks_for_the_module_alone(capsys: pytest.CaptureFixture[str]) -> None:
    """Its parameters are optional: the usage error names the module only."""
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["load"])
    assert e.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.endswith("error: the following arguments are required: module")


def test_a_duration_may_be_zero_a_timeout_may_not() -> None:
    """`kdk trace --duration 0` attaches, reads the counters once and
    detaches (the bench's trace row); `--timeout 0` would end at once."""
    from kdk.cli import _seconds
    from kdk.errors import UsageError

    _seconds("--duration", 0.0, zero=True)
    with pytest.raises(UsageError, match="--timeout 0: not a number of seconds above 0"):
        _seconds("--timeout", 0.0)
