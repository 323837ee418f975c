"""A built kernel's config: which fragments make it, and what it holds.

Pure functions over config text; the kernel's tools (merge_config.sh,
olddefconfig) do the merging (kdk.kbuild.build).
"""

from __future__ import annotations

import re
from pathlib import Path

FRAGMENTS = Path(__file__).resolve().parent / "fragments"
BASE = FRAGMENTS / "kdk.config"  # what every kdk kernel needs
KVM_GUEST = Path("kernel/configs/kvm_guest.config")  # the source tree's own, merged first
FLAVOURS = {"": None, "debug": FRAGMENTS / "debug.config", "kcsan": FRAGMENTS / "kcsan.config"}

_SET = re.compile(r"^(CONFIG_\w+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_\w+) is not set$")

# What `kdk kernel list` names, from a kernel's .config: (option, name).
FEATURES = (
    ("CONFIG_KASAN", "kasan"),
    ("CONFIG_KCSAN", "kcsan"),
    ("CONFIG_KFENCE", "kfence"),
    ("CONFIG_PROVE_LOCKING", "lockdep"),
    ("CONFIG_DEBUG_ATOMIC_SLEEP", "atomic-sleep"),
    ("CONFIG_DEBUG_KMEMLEAK", "kmemleak"),
    ("CONFIG_UBSAN", "ubsan"),
    ("CONFIG_FAILSLAB", "failslab"),
    ("CONFIG_FAIL_PAGE_ALLOC", "fail_page_alloc"),
    ("CONFIG_KUNIT", "kunit"),
    ("CONFIG_DEBUG_INFO_BTF", "btf"),
)


def options(text: str) -> dict[str, str]:
    """A config or fragment as {option: value}; "is not set" is "n"."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if m := _SET.match(line):
            found[m.group(1)] = m.group(2)
        elif m := _UNSET.match(line):
            found[m.group(1)] = "n"
    return found


def missing(wanted: dict[str, str], final: dict[str, str]) -> list[str]:
    """The options of `wanted` the final config does not hold as asked
    (e.g. dropped by olddefconfig for an unmet dependency), as
    "CONFIG_X=wanted (is: y)"; an absent option is "n"."""
    return [
        f"{opt}={value} (is: {final.get(opt, 'n')})"
        for opt, value in wanted.items()
        if final.get(opt, "n") != value
    ]


def features(config_text: str) -> list[str]:
    """The debug features a kernel was built with, by kdk's names."""
    have = options(config_text)
    return [name for opt, name in FEATURES if have.get(opt) == "y"]


def flavour_of(debug: bool, kcsan: bool) -> str:
    """ "debug", "kcsan" or "" (kdk's plain kernel); not both."""
    if debug and kcsan:
        from ..errors import KdkError

        raise KdkError("--debug and --kcsan are separate builds (KCSAN excludes KASAN)")
    return "debug" if debug else "kcsan" if kcsan else ""


def label_of(source: Path | None) -> str:
    """The part of a release naming a source tree of the user's: its
    folder's name, reduced to what a release may hold; "" for Debian's."""
    if source is None:
        return ""
    return re.sub(r"[^A-Za-z0-9.]+", ".", source.resolve().name).strip(".") or "src"


def localversion(flavour: str, label: str) -> str:
    """What the release gets after the kernel's version: "-kdk", then the
    user's tree's label and the flavour (6.1.192-kdk-debug)."""
    return "-kdk" + "".join(f"-{part}" for part in (label, flavour) if part)


def localversion_fragment(suffix: str) -> str:
    """The fragment that names the build in its release string."""
    return f'CONFIG_LOCALVERSION="{suffix}"\n# CONFIG_LOCALVERSION_AUTO is not set\n'


def kdk_fragments(flavour: str, user: list[Path]) -> list[Path]:
    """kdk's fragments for `flavour`, then the user's (later ones win)."""
    extra = FLAVOURS[flavour]
    return [BASE, *([extra] if extra else []), *user]
