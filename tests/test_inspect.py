"""kdk inspect: its answers checked against readelf, nm and modinfo on the same .ko."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from kdk.errors import KdkError
from kdk.kernel import Kernel
from kdk.modules.build import build
from kdk.modules.inspect import GENERATED, Needed, disassemble, format_text, inspect
from kdk.project import ModuleSource

from .conftest import PROJECT

pytestmark = pytest.mark.kbuild

# Two modules of one folder: prov exports a function and has an alias and a
# parameter; user calls it, so modpost writes depends=prov.
PROV = """\
#include <linux/init.h>
#include <linux/module.h>
static int base = 40;
module_param(base, int, 0444);
MODULE_PARM_DESC(base, "What prov_value() adds to");
static int counter;
int prov_value(int x)
{
	return base + x + counter++;
}
EXPORT_SYMBOL_GPL(prov_value);
static int __init prov_init(void) { return 0; }
static void __exit prov_exit(void) { }
module_init(prov_init);
module_exit(prov_exit);
MODULE_LICENSE("GPL");
MODULE_ALIAS("kdk-prov");
MODULE_DESCRIPTION("exports prov_value");
"""
USER = """\
#include <linux/init.h>
#include <linux/module.h>
int prov_value(int x);
static int __init user_init(void) { return prov_value(2) == 42 ? 0 : -EINVAL; }
module_init(user_init);
MODULE_LICENSE("GPL");
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, kdk_kernel: Kernel) -> Path:
    """prov.ko and user.ko, built for the test kernel."""
    path = tmp_path_factory.mktemp("inspect")
    (path / "prov.c").write_text(PROV)
    (path / "user.c").write_text(USER)
    (path / "Kbuild").write_text("obj-m := prov.o user.o\n")
    build(ModuleSource(path.name, path), kdk_kernel, path / "stamps")
    return path


@pytest.fixture(scope="module")
def params_ko(tmp_path_factory: pytest.TempPathFactory, kdk_kernel: Kernel) -> Path:
    """kmods/params (five parameters of several types), built in a copy."""
    path = tmp_path_factory.mktemp("params") / "params"
    shutil.copytree(PROJECT / "kmods" / "params", path, ignore=shutil.ignore_patterns("*.*o"))
    return build(ModuleSource("params", path), kdk_kernel, path / "stamps").main_module("params")


def tool(*argv: str | Path) -> str:
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, check=True).stdout


def test_sections_are_readelfs(folder: Path, kdk_kernel: Kernel) -> None:
    ko = folder / "prov.ko"
    rows = re.findall(
        r"^\s*\[\s*\d+\]\s+(\S+)\s+(\S+)\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)"
        r"\s+[0-9a-f]+\s+([A-Za-z]*)\s+\d+\s+\d+\s+\d+$",
        tool("readelf", "-SW", ko),
        re.M,
    )
    expected = [(name, kind, int(size, 16), flags) for name, kind, size, flags in rows]
    got = [(s.name, s.type, s.size, s.flags) for s in inspect(ko, kdk_kernel).sections]
    assert got == expected and len(got) > 20


def test_functions_data_and_needs_are_readelfs_and_nms(folder: Path, kdk_kernel: Kernel) -> None:
    ko = folder / "prov.ko"
    ins = inspect(ko, kdk_kernel)
    # readelf -s: Num: Value Size Type Bind Vis Ndx Name; defined FUNC and OBJECT
    rows = [r.split() for r in tool("readelf", "-sW", ko).splitlines() if re.match(r"\s*\d+:", r)]
    defined = [(r[3], r[7]) for r in rows if len(r) == 8 and r[6] != "UND"]
    assert {f.name for f in ins.functions} == {n for t, n in defined if t == "FUNC"}
    data = {n for t, n in defined if t == "OBJECT" and not n.startswith(GENERATED)}
    assert {d.name for d in ins.data} == data
    nm = [line.split() for line in tool("nm", "--defined-only", ko).splitlines()]
    assert {f.name for f in ins.functions} <= {n for _, t, n in nm if t in "Tt"}
    undefined = {
        n for t, n in (line.split() for line in tool("nm", "-u", ko).splitlines()) if t == "U"
    }
    assert {n.name for n in ins.needs} == undefined


def test_init_exit_and_exported_functions(folder: Path, kdk_kernel: Kernel) -> None:
    ins = inspect(folder / "prov.ko", kdk_kernel)
    tags = {f.name: f.tags for f in ins.functions}
    assert tags["prov_init"] == ["init"] and tags["prov_exit"] == ["exit"]
    assert tags["prov_value"] == ["exported"] and ins.exports == ["prov_value"]
    assert next(f for f in ins.functions if f.name == "prov_value").binding == "global"
    assert {d.name: d.section for d in ins.data}["counter"] == ".bss"


def test_modinfo_is_modinfos(folder: Path, params_ko: Path, kdk_kernel: Kernel) -> None:
    for ko in (folder / "prov.ko", folder / "user.ko", params_ko):
        ins = inspect(ko, kdk_kernel)
        for key in ("license", "vermagic", "description"):
            assert ins.modinfo.get(key, "") == tool("modinfo", "-F", key, ko).rstrip("\n")
        assert ins.aliases == tool("modinfo", "-F", "alias", ko).split()
        assert ",".join(ins.depends) == tool("modinfo", "-F", "depends", ko).rstrip("\n")
        # modinfo prints "name:description (type)", "name:description" when untyped
        parms = {
            f"{p.name}:{p.description}" + (f" ({p.type})" if p.type else "") for p in ins.parameters
        }
        assert parms == set(tool("modinfo", "-F", "parm", ko).splitlines())
        assert ins.vermagic_matches
    assert inspect(folder / "user.ko", kdk_kernel).depends == ["prov"]
    assert inspect(folder / "prov.ko", kdk_kernel).aliases == ["kdk-prov"]
    types = {p.name: p.type for p in inspect(params_ko, kdk_kernel).parameters}
    assert types["values"] == "array of int" and types["name"] == "charp"


def test_needed_symbols_against_the_kernels_module_symvers(
    folder: Path, kdk_kernel: Kernel
) -> None:
    symvers = (kdk_kernel.build_dir / "Module.symvers").read_text()
    user = inspect(folder / "user.ko", kdk_kernel)
    needs = {n.name: n.provider for n in user.needs}
    assert needs["prov_value"] == "prov.ko (this folder)"  # loaded first by kdk load
    kernels = [name for name, provider in needs.items() if provider == "vmlinux"]
    assert kernels and len(kernels) == len(needs) - 1
    for name in kernels:
        assert re.search(rf"^0x[0-9a-f]+\t{name}\tvmlinux\t", symvers, re.M)
    alone = replace(user, needs=[Needed("nobody_exports_this", "")])
    assert alone.unresolved == ["nobody_exports_this"]
    assert re.search(r"^  nobody_exports_this +MISSING", format_text(alone), re.M)


def test_a_file_that_is_not_a_module(tmp_path: Path, kdk_kernel: Kernel) -> None:
    (tmp_path / "x.ko").write_text("not ELF")
    with pytest.raises(KdkError, match="not a kernel module"):
        inspect(tmp_path / "x.ko", kdk_kernel)


def test_disassembly_with_source_lines(folder: Path) -> None:
    text = disassemble(folder / "prov.ko", "prov_value")
    assert text.splitlines()[0].endswith("<prov_value>:")
    assert f"{folder}/prov.c:9" in text  # source file and line of the function
    assert "return base + x + counter++;" in text  # and the source itself
    assert "<prov_init>" not in text
    with pytest.raises(KdkError, match=r"prov\.ko has no function nothing_here"):
        disassemble(folder / "prov.ko", "nothing_here")
