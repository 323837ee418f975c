"""What a built .ko says about itself: its .modinfo, and whether it fits a kernel."""

from __future__ import annotations

from pathlib import Path

from ..errors import KdkError, VermagicMismatch


def modinfo(ko: Path) -> dict[str, str]:
    """The key=value pairs of a module's .modinfo section (last value wins)."""
    return dict(modinfo_entries(ko))


def modinfo_entries(ko: Path) -> list[tuple[str, str]]:
    """Every key=value entry of a module's .modinfo section, in order (keys
    such as alias, parm and parmtype come once per value)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with ko.open("rb") as f:
            section = ELFFile(f).get_section_by_name(".modinfo")
            data = section.data() if section is not None else b""
    except (ELFError, OSError) as e:
        raise KdkError(f"{ko}: not a kernel module ({e})") from None
    entries = []
    for entry in data.split(b"\0"):
        key, sep, value = entry.decode(errors="replace").partition("=")
        if sep:
            entries.append((key, value))
    return entries


def check_vermagic(ko: Path, info: dict[str, str], release: str) -> None:
    """Refuse a module whose vermagic names another kernel than `release`."""
    vermagic = info.get("vermagic", "")
    built_for = vermagic.split(" ", 1)[0]
    if built_for != release:
        raise VermagicMismatch(
            f"{ko.name} was built for kernel {built_for or '(no vermagic)'}, "
            f"the guest runs {release}: rebuild it with `kdk build`"
        )
