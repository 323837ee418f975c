"""Which modules a module needs loaded first, from the symbols in the .ko files.

A module's undefined symbols must come from somewhere when insmod links it:
the kernel image, one of the kernel's own modules (both listed in the build
tree's Module.symvers), or another module of the same folder (its
`__ksymtab_<symbol>` entries). So, before anything is loaded:

- the folder's modules that export what it needs are loaded first, their
  own providers before them;
- the kernel's modules it needs are `modprobe`d in the guest;
- a symbol that none of them provides is an error naming the symbol and
  the module that needs it (insmod would only say "Unknown symbol in module").

modpost's `depends=` line in .modinfo says the same for a folder built in one
go; the symbols also work for prebuilt .ko files and say *which* symbol is
missing. kmod's depmod over a scratch tree (`depmod -b DIR -E Module.symvers
-e RELEASE`, then `modprobe -d DIR --show-depends`) orders a folder's modules
the same way, but tried on 6.1 it called crc7_be (exported by the kernel's
lib/crc7 module) an unknown symbol and gave no dependency for it; getting
that right would need the kernel's whole module tree in the scratch tree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ..errors import KdkError, LoadFailed
from ..kernel import module_name
from .info import ko_facts

IMAGE = "vmlinux"  # Module.symvers's name for the kernel image


class UnresolvedSymbol(LoadFailed):
    """A module needs a symbol that neither the kernel nor its folder exports."""


@dataclass(frozen=True)
class Symbols:
    """What one .ko exports and what it needs from elsewhere."""

    exports: frozenset[str]
    needs: frozenset[str]  # undefined global symbols (weak ones may stay unresolved)


def ko_symbols(ko: Path) -> Symbols:
    """The exported and the undefined symbols of a module's symbol table."""
    facts = ko_facts(ko)
    return Symbols(facts.exports, facts.needs)


def parse_symvers(text: str) -> dict[str, str]:
    """Module.symvers as {symbol: where it is}: "vmlinux" for the kernel
    image, else the name of the kernel module exporting it."""
    where = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 3:
            where[fields[1]] = IMAGE if fields[2] == IMAGE else module_name(fields[2])
    return where


class Symvers(Mapping[str, str]):
    """Module.symvers's text as parse_symvers's mapping, read where it is
    asked: a load looks up the few symbols its module needs, and parsing
    all of a distribution kernel's (~24,000 lines) cost it ~50 ms."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._parsed: dict[str, str] | None = None

    def __getitem__(self, symbol: str) -> str:
        if self._parsed is not None:  # iterated already (kdk inspect: every symbol)
            return self._parsed[symbol]
        at = 0
        while (at := self.text.find(f"\t{symbol}\t", at) + 1) > 0:
            start = self.text.rfind("\n", 0, at) + 1
            if "\t" not in self.text[start : at - 1]:  # the line's second field
                path = self.text[at + len(symbol) :].split("\t", 2)[1]
                return IMAGE if path == IMAGE else module_name(path)
        raise KeyError(symbol)

    def __iter__(self) -> Iterator[str]:
        return iter(self.parsed())

    def __len__(self) -> int:
        return len(self.parsed())

    def parsed(self) -> dict[str, str]:
        if self._parsed is None:
            self._parsed = parse_symvers(self.text)
        return self._parsed


@cache
def kernel_symbols(build_dir: Path) -> Symvers:
    """The symbols a kernel exports ({symbol: "vmlinux" or module}), from
    its build tree's Module.symvers; empty when the tree has none."""
    try:
        return Symvers((build_dir / "Module.symvers").read_text())
    except OSError:
        return Symvers("")


class Siblings:
    """The modules of one folder, and which of them provides what to which."""

    def __init__(self, kos: list[Path], skip_gone: bool = False) -> None:
        """`skip_gone`: a module whose file is gone once listed is left out
        (another folder's, being built again at this moment)."""
        self.symbols: dict[Path, Symbols] = {}
        for ko in dict.fromkeys(kos):
            try:
                self.symbols[ko] = ko_symbols(ko)
            except KdkError:
                if not skip_gone or ko.exists():
                    raise
        self.exporter = {s: ko for ko, syms in self.symbols.items() for s in syms.exports}

    def _add(self, ko: Path) -> None:
        if ko not in self.symbols:
            self.symbols[ko] = ko_symbols(ko)
            self.exporter.update(dict.fromkeys(self.symbols[ko].exports, ko))

    def providers(self, ko: Path) -> list[Path]:
        """The modules of the folder `ko` needs loaded first, in load order
        (depth first: a provider's providers come before it)."""
        self._add(ko)
        order: list[Path] = []
        seen = {ko}

        def visit(user: Path) -> None:
            for sym in sorted(self.symbols[user].needs):
                provider = self.exporter.get(sym)
                if provider is not None and provider not in seen:
                    seen.add(provider)
                    visit(provider)
                    order.append(provider)

        visit(ko)
        return order

    def dependents(self, ko: Path) -> list[Path]:
        """The modules of the folder that need `ko`, directly or through
        another, in unload order (a user before what it uses)."""
        self._add(ko)
        order: list[Path] = []
        seen = {ko}

        def visit(provider: Path) -> None:
            for user, syms in self.symbols.items():
                if user not in seen and syms.needs & self.symbols[provider].exports:
                    seen.add(user)
                    visit(user)
                    order.append(user)

        visit(ko)
        return order


@dataclass(frozen=True)
class Plan:
    """What to load before a module, in order."""

    kernel_modules: list[str]  # the kernel's own modules to modprobe first
    providers: list[Path]  # modules of its folder to insmod first, in load order


def plan(target: Path, siblings: Siblings, kernel: Mapping[str, str], where: str = "") -> Plan:
    """What must be loaded before `target`: its providers among `siblings`
    and the kernel modules any of them needs (`kernel` from kernel_symbols).
    UnresolvedSymbol names a symbol that nothing provides, with the module
    that needs it (`where`: what `siblings` are, for the message)."""
    providers = siblings.providers(target)
    kernel_modules: list[str] = []
    for ko in [*providers, target]:
        missing = []
        for sym in sorted(siblings.symbols[ko].needs):
            if sym in siblings.exporter:
                continue
            if sym not in kernel:
                missing.append(sym)
            elif kernel[sym] != IMAGE and kernel[sym] not in kernel_modules:
                kernel_modules.append(kernel[sym])
        if missing:
            raise UnresolvedSymbol(
                f"{module_name(ko.name)} needs {', '.join(missing)}, which neither the kernel "
                f"nor {where or f'the modules of {ko.parent}'} export"
            )
    return Plan(kernel_modules, providers)


def plan_in_project(
    target: Path,
    siblings: list[Path],
    kernel: Mapping[str, str],
    project: Callable[[], list[Path]],
) -> Plan:
    """plan() over the modules of `target`'s folder; when a symbol is still
    missing, over the project's built modules too (`project()` lists them): a
    folder may be built against another's Module.symvers (KBUILD_EXTRA_SYMBOLS)."""
    try:
        return plan(target, Siblings(siblings), kernel)
    except UnresolvedSymbol:
        built = Siblings([*siblings, *project()], skip_gone=True)
        return plan(target, built, kernel, "the modules built in the project")
