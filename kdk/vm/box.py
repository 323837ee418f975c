"""kdk's Vagrant box: built here from Debian's archive, cached by recipe.

The recipe is `vm/box/` in kdk's checkout (a shell script and its package
list). A box is cached under `~/.cache/kdk/boxes/<key>/`, keyed by the
recipe's files and by the apt sources it installs from: the host's own
Debian suites, so that the box's kernel is the one the host has headers
for (and modules build on the host). The project's `.kdk/box.json` names
the box the repository's Vagrantfile uses.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import KdkError, MissingDependency
from ..kernel import user_cache

RECIPE = Path(__file__).resolve().parents[2] / "vm" / "box"
POINTER = "box.json"  # in the project's state folder, read by the Vagrantfile
BUILD_TIMEOUT = 1200.0
TOOLS = {
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "qemu-img": "qemu-utils",
    "ssh-keygen": "openssh-client",
}


@dataclass(frozen=True)
class Box:
    """A built box in the cache."""

    name: str  # what Vagrant calls it: kdk/<suite>-<key>
    path: Path  # the .box file
    host_key: Path  # the guest's ed25519 host key (public), to pin it


def cache_root() -> Path:
    return user_cache() / "boxes"


def parse_policy(text: str) -> list[str]:
    """apt lines for the suites apt installs from by default (priority 500)
    whose origin is Debian, from `apt-cache policy`'s output: backports and
    other archives (priority 100 or less, or another origin) are left out."""
    sources: dict[tuple[str, str], list[str]] = {}
    lines = text.splitlines()
    for line, release in itertools.pairwise(lines):
        m = re.match(r"\s*500 (\S+) (\S+)/(\S+) \S+ Packages$", line)
        if m and re.search(r"\bo=Debian(,|$)", release):
            sources.setdefault((m.group(1), m.group(2)), []).append(m.group(3))
    return [
        f"deb {uri} {suite} {' '.join(sorted(set(comps)))}"
        for (uri, suite), comps in sorted(sources.items())
    ]


def host_sources() -> list[str]:
    """The host's default Debian suites as apt lines (see parse_policy)."""
    try:
        out = subprocess.run(
            ["apt-cache", "policy"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise MissingDependency(
            f"cannot read the host's apt sources ({e}): a box is built on Debian only"
        ) from None
    sources = parse_policy(out)
    if not sources:
        raise KdkError("the host has no Debian archive in its apt sources to build a box from")
    return sources


def host_suite() -> str:
    """The host's Debian release name (bookworm)."""
    for line in Path("/etc/os-release").read_text().splitlines():
        key, _, value = line.partition("=")
        if key == "VERSION_CODENAME" and value:
            return value.strip('"')
    raise KdkError("/etc/os-release names no release (VERSION_CODENAME)")


def cache_key(recipe: Path, suite: str, sources: list[str]) -> str:
    """Changes when a file of the recipe, the suite or the sources change."""
    h = hashlib.sha256(f"{suite}\n{sources}\n".encode())
    for path in sorted(p for p in recipe.rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(recipe)}\n".encode() + path.read_bytes())
    return h.hexdigest()[:16]


def find_box(suite: str | None = None, sources: list[str] | None = None) -> tuple[Box, bool]:
    """The box for the current recipe and host sources, and whether it is built."""
    if not (RECIPE / "build").is_file():
        raise MissingDependency(
            f"kdk's box recipe is not at {RECIPE}: building a box needs a checkout of kdk"
        )
    suite = suite or host_suite()
    key = cache_key(RECIPE, suite, sources if sources is not None else host_sources())
    folder = cache_root() / key
    box = Box(f"kdk/{suite}-{key}", folder / "kdk.box", folder / "host_key.pub")
    return box, box.path.is_file() and box.host_key.is_file()


def build_box(
    state_root: Path, say: Callable[[str], None], force: bool = False
) -> tuple[Box, bool]:
    """The cached box, built first when there is none (or `force`), and
    named in the project's state folder for its Vagrantfile; (box, whether
    it was built now). The recipe's output streams to `say`'s caller
    through a log file next to the box."""
    suite, sources = host_suite(), host_sources()
    box, built = find_box(suite, sources)
    if built and not force:
        write_pointer(state_root, box)
        return box, False
    if os.geteuid() != 0:
        raise KdkError("building the box needs root (mmdebstrap into a folder, chroot)")
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            raise MissingDependency(
                f"{tool} not found: install {package} (scripts/install-vagrant)"
            )
    folder = box.path.parent
    folder.parent.mkdir(parents=True, exist_ok=True)
    say(
        f"building the box {box.name} from {', '.join(s.split()[2] for s in sources)} into {folder}"
    )
    tmp = Path(tempfile.mkdtemp(prefix=f".{box.path.parent.name}-", dir=folder.parent))
    log = tmp / "build.log"
    try:
        with log.open("wb") as f:
            proc = subprocess.run(
                [str(RECIPE / "build"), str(tmp), suite, *sources],
                stdout=f,
                stderr=subprocess.STDOUT,
                timeout=BUILD_TIMEOUT,
            )
        if proc.returncode != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            raise KdkError(f"the box recipe failed ({proc.returncode}): " + " | ".join(tail))
        shutil.rmtree(folder, ignore_errors=True)
        tmp.replace(folder)
    except subprocess.TimeoutExpired:
        raise KdkError(f"the box recipe took more than {BUILD_TIMEOUT:g} s") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _prune(box)
    write_pointer(state_root, box)
    return box, True


def _prune(keep: Box) -> None:
    """Remove older kdk boxes' cache folders, and every kdk box in Vagrant's
    box store: an older one, or a copy of `keep` from before a rebuild under
    the same name, which Vagrant would go on using (the next `vagrant up`
    adds `keep` again from its cache folder). Machines made from a removed
    box keep their own disks."""
    for folder in cache_root().iterdir():
        if folder != keep.path.parent and not folder.name.startswith("."):
            shutil.rmtree(folder, ignore_errors=True)
    if shutil.which("vagrant") is None:
        return
    # From the cache folder: no project Vagrantfile is read (it needs a built box).
    listed = subprocess.run(
        ["vagrant", "box", "list"], capture_output=True, text=True, timeout=60, cwd=cache_root()
    ).stdout
    for name in set(re.findall(r"^(kdk/\S+)", listed, re.M)):
        remove_from_vagrant(name)


def remove_from_vagrant(name: str) -> None:
    """Remove the box `name` from Vagrant's box store (if it is there); the
    next `vagrant up` adds it again from kdk's cache."""
    subprocess.run(
        ["vagrant", "box", "remove", "--force", "--all", name],
        capture_output=True,
        timeout=60,
        cwd=cache_root(),
    )


def write_pointer(state_root: Path, box: Box) -> Path:
    """Name `box` in the project's `.kdk/box.json`, for the Vagrantfile."""
    state_root.mkdir(parents=True, exist_ok=True)
    pointer = state_root / POINTER
    pointer.write_text(json.dumps({"name": box.name, "path": str(box.path)}) + "\n")
    return pointer
