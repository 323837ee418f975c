"""What a built .ko says about itself: its .modinfo, and whether it fits a kernel."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import KdkError, VermagicMismatch
from ..kernel import user_cache


def modinfo(ko: Path) -> dict[str, str]:
    """The key=value pairs of a module's .modinfo section (last value wins)."""
    return dict(modinfo_entries(ko))


def modinfo_entries(ko: Path) -> list[tuple[str, str]]:
    """Every key=value entry of a module's .modinfo section, in order (keys
    such as alias, parm and parmtype come once per value)."""
    return [(k, v) for k, v in ko_facts(ko).modinfo]


KSYMTAB = "__ksymtab_"  # a symbol the module exports has an entry so named
FACTS_FORMAT = "kdk-ko-facts-1"


@dataclass(frozen=True)
class KoFacts:
    """What a load needs to know of a .ko: its .modinfo entries, the
    symbols it exports and those it needs from elsewhere (its undefined
    global ones; weak ones may stay unresolved)."""

    modinfo: list[tuple[str, str]]
    exports: frozenset[str]
    needs: frozenset[str]


def ko_facts(ko: Path) -> KoFacts:
    """A .ko's KoFacts, from the user's cache while the file is the same
    (path, size, mtime, inode): a warm `kdk load` then neither imports
    pyelftools nor parses the ELF file (~35 ms of a ~0.4 s load)."""
    try:
        st = ko.stat()
    except OSError as e:
        raise KdkError(f"{ko}: not a kernel module ({e})") from None
    path = str(ko.resolve())
    key = f"{FACTS_FORMAT}:{path}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
    cached = user_cache() / "ko-facts" / (hashlib.sha256(path.encode()).hexdigest()[:24] + ".json")
    try:
        data = json.loads(cached.read_text())
        if data["key"] == key:
            return KoFacts(
                [(k, v) for k, v in data["modinfo"]],
                frozenset(data["exports"]),
                frozenset(data["needs"]),
            )
    except (OSError, ValueError, KeyError, TypeError):
        pass
    facts = _read_facts(ko)
    data = {
        "key": key,
        "modinfo": facts.modinfo,
        "exports": sorted(facts.exports),
        "needs": sorted(facts.needs),
    }
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(cached)
    except OSError:
        pass  # a cache that cannot be written only costs the next load the parse
    return facts


def _read_facts(ko: Path) -> KoFacts:
    """KoFacts from the ELF file itself (its .modinfo and .symtab sections)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.sections import SymbolTableSection

    exports, needs = set(), set()
    try:
        with ko.open("rb") as f:
            elf = ELFFile(f)
            section = elf.get_section_by_name(".modinfo")
            data = section.data() if section is not None else b""
            symtab = elf.get_section_by_name(".symtab")
            if not isinstance(symtab, SymbolTableSection):
                raise ELFError("no symbol table")
            for sym in symtab.iter_symbols():
                if sym.name.startswith(KSYMTAB):
                    exports.add(sym.name[len(KSYMTAB) :])
                elif (
                    sym.name
                    and sym["st_shndx"] == "SHN_UNDEF"
                    and sym["st_info"]["bind"] == "STB_GLOBAL"
                ):
                    needs.add(sym.name)
    except (ELFError, OSError) as e:
        raise KdkError(f"{ko}: not a kernel module ({e})") from None
    entries = []
    for entry in data.split(b"\0"):
        key, sep, value = entry.decode(errors="replace").partition("=")
        if sep:
            entries.append((key, value))
    return KoFacts(entries, frozenset(exports), frozenset(needs))


def check_vermagic(ko: Path, info: dict[str, str], release: str) -> None:
    """Refuse a module whose vermagic names another kernel than `release`."""
    vermagic = info.get("vermagic", "")
    built_for = vermagic.split(" ", 1)[0]
    if built_for != release:
        raise VermagicMismatch(
            f"{ko.name} was built for kernel {built_for or '(no vermagic)'}, "
            f"the guest runs {release}: rebuild it with `kdk build`"
        )
