"""Kbuild on the host: output filtering, staleness, real builds and errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kdk.errors import BuildFailed
from kdk.kernel import Kernel
from kdk.modules.build import build, compiler_output, read_modules_order, source_digest
from kdk.modules.info import modinfo
from kdk.project import ModuleSource

from .conftest import DATA, PROJECT


def test_compiler_output_keeps_errors_and_drops_chatter() -> None:
    out = compiler_output((DATA / "kbuild-error.txt").read_text())
    assert "/tmp/broken/broken.c:5:16: error: " in out and "undefined_thing" in out
    assert "Entering directory" not in out and "CC [M]" not in out


def test_modules_order_in_both_formats(tmp_path: Path) -> None:
    (tmp_path / "modules.order").write_text(f"{tmp_path}/a.ko\nb.o\n")
    assert read_modules_order(tmp_path) == [tmp_path / "a.ko", tmp_path / "b.ko"]
    assert read_modules_order(tmp_path / "none") == []


def test_digest_follows_sources_not_outputs(tmp_path: Path, host_kernel: Kernel) -> None:
    (tmp_path / "m.c").write_text("int x;\n")
    (tmp_path / "Kbuild").write_text("obj-m := m.o\n")
    first = source_digest(tmp_path, host_kernel)
    (tmp_path / "m.ko").write_bytes(b"output")
    (tmp_path / "m.mod.c").write_text("generated")
    assert source_digest(tmp_path, host_kernel) == first
    os.utime(tmp_path / "m.c", ns=(1, 1))
    assert source_digest(tmp_path, host_kernel) != first
    other = Kernel("9.9.9", host_kernel.image, host_kernel.modules_dir)
    assert source_digest(tmp_path, other) != source_digest(tmp_path, host_kernel)


def copy_hello(dest: Path, name: str = "hello") -> ModuleSource:
    folder = dest / name
    folder.mkdir()
    shutil.copy(PROJECT / "kmods" / "hello" / "hello.c", folder / f"{name}.c")
    (folder / "Kbuild").write_text(f"obj-m := {name}.o\n")
    return ModuleSource(name, folder)


@pytest.mark.kbuild
def test_builds_once_then_only_after_a_change(tmp_path: Path, host_kernel: Kernel) -> None:
    src = copy_hello(tmp_path)
    stamps = tmp_path / "stamps"
    first = build(src, host_kernel, stamps)
    assert first.rebuilt and first.modules == [src.path / "hello.ko"]
    assert first.output == ""  # no warnings
    info = modinfo(first.modules[0])
    assert info["vermagic"].split()[0] == host_kernel.release
    assert info["name"] == "hello" and info["parm"].startswith("greeting:")
    assert not build(src, host_kernel, stamps).rebuilt
    (src.path / "hello.c").touch()
    assert build(src, host_kernel, stamps).rebuilt


@pytest.mark.kbuild
def test_compile_errors_are_shown_with_file_and_line(tmp_path: Path, host_kernel: Kernel) -> None:
    src = copy_hello(tmp_path, "broken")
    c = src.path / "broken.c"
    c.write_text(c.read_text().replace('pr_info("%s, world\\n", greeting);', "no_such_call();"))
    with pytest.raises(BuildFailed, match="broken does not compile") as err:
        build(src, host_kernel, tmp_path / "stamps")
    assert f"{c}:" in err.value.details and "error:" in err.value.details
