"""What is inside a .ko, read on the host (`kdk inspect`): readelf, nm,
modinfo and objdump for one module, before anything is loaded.

Its sections (sizes, flags), its functions and data (`__init`, `__exit`,
exported), its modinfo (license, vermagic, parameters with their types and
descriptions, aliases, depends), and the kernel symbols it needs, each with
what provides it in the target kernel (the image or one of its modules, from
the build tree's Module.symvers) or another module of its folder (which
`kdk load` loads first), or that nothing does: insmod would fail with
"Unknown symbol".
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import KdkError, MissingDependency
from ..kernel import Kernel, module_name
from .deps import Siblings, kernel_symbols
from .info import modinfo_entries

# readelf's letters for section flags, in its order
SECTION_FLAGS = [
    (0x1, "W"),
    (0x2, "A"),
    (0x4, "X"),
    (0x10, "M"),
    (0x20, "S"),
    (0x40, "I"),
    (0x80, "L"),
    (0x100, "O"),
    (0x200, "G"),
    (0x400, "T"),
    (0x800, "C"),
    (0x80000000, "E"),
]
# Data symbols that modpost and the export macros generate: shown elsewhere
# (as modinfo and exports), not as the module's own data.
GENERATED = ("__UNIQUE_ID_", "__ksymtab_", "__kstrtab_", "__kstrtabns_", "__kcrctab_", "__crc_")
OBJDUMP_TIMEOUT = 60.0
OBJDUMP_SYMBOL = re.compile(r"^[0-9a-f]+ <([^>]+)>:$")  # where a function's code starts


@dataclass(frozen=True)
class Section:
    name: str
    type: str  # PROGBITS, NOBITS, RELA, ...
    size: int
    flags: str  # readelf's letters: A (loaded), X (code), W (writable), ...


@dataclass(frozen=True)
class Symbol:
    name: str
    section: str
    size: int
    binding: str  # "global", "local" or "weak"
    tags: list[str] = field(default_factory=list)  # "init", "exit", "exported"


@dataclass(frozen=True)
class Parameter:
    name: str
    type: str  # charp, int, bool, ... ("" when the module gives none)
    description: str


@dataclass(frozen=True)
class Needed:
    """A symbol the module needs from outside, and what provides it."""

    name: str
    provider: str  # "vmlinux", a kernel module's name, "NAME.ko (this folder)", or ""


@dataclass(frozen=True)
class Inspection:
    """What `kdk inspect` says about one .ko."""

    path: str
    name: str  # the module's name in the kernel
    kernel: str  # the release it was checked against
    vermagic_matches: bool  # built for that kernel
    modinfo: dict[str, str]  # single-valued keys: license, vermagic, description, ...
    depends: list[str]
    aliases: list[str]
    parameters: list[Parameter]
    sections: list[Section]
    functions: list[Symbol]
    data: list[Symbol]
    exports: list[str]
    needs: list[Needed]

    @property
    def unresolved(self) -> list[str]:
        """Needed symbols the target kernel does not export."""
        return [n.name for n in self.needs if not n.provider]

    def as_json(self) -> dict[str, Any]:
        return dict(asdict(self), unresolved=self.unresolved)


def is_part_of(function: str, name: str) -> bool:
    """Whether `name` is `function` or a part of it gcc split off (.cold, .part.0)."""
    return name == function or name.startswith(function + ".")


def _flags(value: int) -> str:
    return "".join(letter for bit, letter in SECTION_FLAGS if value & bit)


def inspect(ko: Path, kernel: Kernel) -> Inspection:
    """Read `ko` (sections, symbols, modinfo) and check its needs against `kernel`."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    folder = Siblings(sorted({ko, *ko.parent.glob("*.ko")}))  # also: is `ko` a module
    syms = folder.symbols[ko]
    entries = modinfo_entries(ko)
    sections: list[Section] = []
    functions: list[Symbol] = []
    data: list[Symbol] = []
    try:
        with ko.open("rb") as f:
            elf = ELFFile(f)
            names = [s.name for s in elf.iter_sections()]
            for sec in list(elf.iter_sections())[1:]:
                sections.append(
                    Section(
                        sec.name,
                        sec["sh_type"].removeprefix("SHT_"),
                        sec["sh_size"],
                        _flags(sec["sh_flags"]),
                    )
                )
            symtab = elf.get_section_by_name(".symtab")
            assert isinstance(symtab, SymbolTableSection)  # ko_symbols checked it
            for sym in symtab.iter_symbols():
                kind, index = sym["st_info"]["type"], sym["st_shndx"]
                if kind not in ("STT_FUNC", "STT_OBJECT") or not isinstance(index, int):
                    continue
                section = names[index]
                marks = (
                    ("init", section.startswith(".init.")),
                    ("exit", section.startswith(".exit.")),
                    ("exported", sym.name in syms.exports),
                )
                binding = sym["st_info"]["bind"].removeprefix("STB_").lower()
                entry = Symbol(
                    sym.name, section, sym["st_size"], binding, [tag for tag, yes in marks if yes]
                )
                if kind == "STT_FUNC":
                    functions.append(entry)
                elif not sym.name.startswith(GENERATED):
                    data.append(entry)
    except (ELFError, OSError) as e:
        raise KdkError(f"{ko}: not a kernel module ({e})") from None
    single = dict(entries)
    types = dict(v.split(":", 1) for k, v in entries if k == "parmtype" and ":" in v)
    descriptions = dict(v.split(":", 1) for k, v in entries if k == "parm" and ":" in v)
    order = dict.fromkeys(v.split(":", 1)[0] for k, v in entries if k in ("parm", "parmtype"))
    params = [Parameter(n, types.get(n, ""), descriptions.get(n, "")) for n in order]
    provided = dict(kernel_symbols(kernel.build_dir))
    provided.update({s: f"{p.name} (this folder)" for s, p in folder.exporter.items() if p != ko})
    return Inspection(
        path=str(ko),
        name=single.get("name") or module_name(ko.name),
        kernel=kernel.release,
        vermagic_matches=single.get("vermagic", "").split(" ", 1)[0] == kernel.release,
        modinfo={k: v for k, v in single.items() if k not in ("alias", "parm", "parmtype")},
        depends=[d for d in single.get("depends", "").split(",") if d],
        aliases=[v for k, v in entries if k == "alias"],
        parameters=params,
        sections=sections,
        functions=sorted(functions, key=lambda s: s.name),
        data=sorted(data, key=lambda s: s.name),
        exports=sorted(syms.exports),
        needs=[Needed(n, provided.get(n, "")) for n in sorted(syms.needs)],
    )


def _symbol_line(s: Symbol) -> str:
    tags = f"  [{', '.join(s.tags)}]" if s.tags else ""
    return f"  {s.name:<32} {s.size:>6}  {s.section}{tags}"


def format_text(ins: Inspection) -> str:
    """The human-readable report."""
    info = ins.modinfo
    match = "matches" if ins.vermagic_matches else f"does NOT match {ins.kernel}"
    lines = [
        f"{ins.name}: {ins.path}",
        f"  license: {info.get('license', '(none)')}  vermagic: "
        f"{info.get('vermagic', '(none)')} ({match})",
    ]
    for key in ("description", "author", "version", "srcversion"):
        if key in info:
            lines.append(f"  {key}: {info[key]}")
    lines.append(f"  depends: {', '.join(ins.depends) or '(none)'}")
    lines += [f"  alias: {a}" for a in ins.aliases]
    lines.append(f"parameters ({len(ins.parameters)}):")
    lines += [f"  {p.name} ({p.type or '?'}): {p.description}" for p in ins.parameters]
    lines.append(f"sections ({len(ins.sections)}):")
    lines += [f"  {s.name:<32} {s.type:<10} {s.size:>7}  {s.flags}" for s in ins.sections]
    lines.append(f"functions ({len(ins.functions)}):")
    lines += [_symbol_line(s) for s in ins.functions]
    lines.append(f"data ({len(ins.data)}):")
    lines += [_symbol_line(s) for s in ins.data]
    lines.append(f"exports ({len(ins.exports)}): {', '.join(ins.exports) or '(none)'}")
    lines.append(f"kernel symbols it needs ({len(ins.needs)}), provided by {ins.kernel}:")
    lines += [f"  {n.name:<32} {n.provider or 'MISSING: insmod would fail'}" for n in ins.needs]
    return "\n".join(lines)


def disassemble(ko: Path, function: str) -> str:
    """objdump's disassembly of one function of `ko` and its parts that gcc
    moved out (`function.cold`), with source file and line numbers, the
    source itself where the file is there, and the relocations, so calls
    name what they call (objdump's --disassemble=FUNC gets those wrong in a
    .ko, so the whole file is disassembled and the function cut out)."""
    objdump = shutil.which("objdump")
    if objdump is None:
        raise MissingDependency("objdump not found: install the binutils package")
    argv = [objdump, "-d", "-l", "-S", "-r", "--no-show-raw-insn", str(ko)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=OBJDUMP_TIMEOUT)
    if proc.returncode != 0:
        raise KdkError(f"objdump failed on {ko}: {proc.stderr.strip()}")
    blocks: list[list[str]] = []
    keep = False
    for line in proc.stdout.splitlines():
        head = OBJDUMP_SYMBOL.match(line)
        if head or line.startswith("Disassembly of section"):
            keep = bool(head) and is_part_of(function, head.group(1) if head else "")
            if keep:
                blocks.append([])
        if keep:
            blocks[-1].append(line)
    if not blocks:
        raise KdkError(f"{ko.name} has no function {function}")
    return "\n".join("\n".join(b).rstrip() + "\n" for b in blocks)
