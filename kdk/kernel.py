"""Kernels on the host, their modules.dep, and what a .ko says about itself."""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import KdkError, MissingDependency

BOOT = Path("/boot")
MODULES = Path("/lib/modules")
KO_SUFFIXES = (".ko", ".ko.xz", ".ko.zst", ".ko.gz")
DEFAULT_LINKS = (Path("/vmlinuz"), BOOT / "vmlinuz")  # Debian's, Ubuntu's
FLAVOURS = ("debug", "kcsan")  # `kdk up --kernel debug`: the newest build of that flavour


@dataclass(frozen=True)
class Kernel:
    """A kernel the guest can boot: its image and its module tree on the host."""

    release: str  # what `uname -r` prints in the guest
    image: Path  # the bzImage QEMU boots
    modules_dir: Path  # /lib/modules/<release>: modules.dep and the .ko files

    @property
    def build_dir(self) -> Path:
        """The Kbuild tree (kernel headers) out-of-tree modules build against."""
        return self.modules_dir / "build"

    @property
    def config(self) -> Path:
        """The kernel's .config, beside its image (as Debian installs it)."""
        return self.image.parent / f"config-{self.release}"

    def enabled(self, option: str) -> bool:
        """Whether its config sets `option` (CONFIG_KASAN) to y or m; False
        without a config file."""
        try:
            mtime = self.config.stat().st_mtime_ns
        except OSError:
            return False
        return option in _config_options(self.config, mtime)

    @property
    def built(self) -> bool:
        """Whether kdk built it (`kdk kernel build`): its modules are not in
        /lib/modules, the guest binds them there."""
        return self.modules_dir != MODULES / self.release


@functools.lru_cache(maxsize=8)
def _config_options(config: Path, mtime_ns: int) -> frozenset[str]:
    """The options a config file sets to y or m (read once per version of
    the file: a boot asks several times)."""
    found = re.findall(r"^(CONFIG_\w+)=[ym]$", config.read_text(errors="replace"), re.M)
    return frozenset(found)


def user_cache() -> Path:
    """kdk's part of the user's cache: what serves every project (kernels,
    their sources and ccache, Vagrant boxes, the module build locks)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kdk"


def kernels_cache() -> Path:
    """Where `kdk kernel build` keeps its kernels: the user's cache, not a
    project (they are big and serve every project)."""
    return user_cache() / "kernels"


def built_kernels(cache: Path | None = None) -> list[Kernel]:
    """Kernels `kdk kernel build` finished, newest build first. A folder
    holds one: vmlinuz-REL, config-REL and modules/lib/modules/REL."""
    found = []
    for image in (cache or kernels_cache()).glob("*/vmlinuz-*"):
        release = image.name.removeprefix("vmlinuz-")
        k = Kernel(release, image, image.parent / "modules" / "lib" / "modules" / release)
        if k.build_dir.is_dir():
            found.append(k)
    return sorted(found, key=lambda k: k.image.stat().st_mtime, reverse=True)


def _version_key(release: str) -> list[tuple[int, str]]:
    """Sort key that orders 6.1.0-9 before 6.1.0-10."""
    return [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.-]", release)]


def host_kernels(boot: Path = BOOT, modules: Path = MODULES) -> list[Kernel]:
    """Kernels that have an image in /boot and headers installed, newest first."""
    found = []
    for image in boot.glob("vmlinuz-*"):
        release = image.name.removeprefix("vmlinuz-")
        k = Kernel(release, image, modules / release)
        if k.build_dir.is_dir():
            found.append(k)
    return sorted(found, key=lambda k: _version_key(k.release), reverse=True)


def all_kernels() -> list[Kernel]:
    """The installed kernels with headers (newest first), then the kernels
    kdk built (newest build first)."""
    return host_kernels() + built_kernels()


def default_kernel(kernels: list[Kernel], links: tuple[Path, ...] = DEFAULT_LINKS) -> Kernel:
    """The kernel the host's own /vmlinuz link names (the distribution's
    default), when it has headers; else the newest."""
    for link in links:
        try:
            target = link.resolve(strict=True)
        except OSError:
            continue
        for k in kernels:
            if k.image.resolve() == target:
                return k
    return kernels[0]


def matches(spec: str, release: str) -> bool:
    """Whether `spec` names `release`: equal, or a prefix ending where a
    version part ends ("6.1" names 6.1.0-56-amd64, not 6.12.117)."""
    return release == spec or (
        release.startswith(spec) and (spec[-1] in ".-+" or release[len(spec)] in ".-+")
    )


def select_kernel(spec: str | None = None) -> Kernel:
    """The kernel named by `spec` (a release, a prefix of one, e.g. "6.12",
    which means the newest that matches, an image path, or a flavour of
    kdk's builds, "debug": the newest debug build), else the host's
    default. The host's kernels come before kdk's builds for a prefix."""
    host = host_kernels()
    kernels = host + built_kernels()
    if spec is None:
        if not host:
            raise MissingDependency(
                "no kernel with headers on this host: install linux-image-amd64 "
                "and linux-headers-amd64 (make demo/test do it)"
            )
        return default_kernel(host)
    for k in kernels:
        if spec in (k.release, str(k.image)):
            return k
    if spec in FLAVOURS:
        for k in built_kernels():
            if k.release.endswith(f"-{spec}"):
                return k
        raise KdkError(f"no {spec} kernel built yet: run `kdk kernel build --{spec}`")
    for k in kernels:
        if matches(spec, k.release):
            return k
    path = Path(spec)
    if path.is_file():
        release = path.name.removeprefix("vmlinuz-")
        return Kernel(release, path, MODULES / release)
    have = ", ".join(k.release for k in kernels) or "none"
    raise KdkError(f"no kernel {spec!r} with headers on this host or built by kdk (have: {have})")


def select_kernels(specs: list[str]) -> list[Kernel]:
    """The kernels named, each once, in order; "all" names every kernel
    with headers and every kernel kdk built (all_kernels)."""
    chosen: list[Kernel] = []
    for spec in specs:
        for k in all_kernels() if spec == "all" else [select_kernel(spec)]:
            if k not in chosen:
                chosen.append(k)
    return chosen


def module_name(path: str) -> str:
    """The name the kernel uses for a module file: no folder, suffix, or '-'."""
    name = path.rsplit("/", 1)[-1]
    for suffix in KO_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return name.replace("-", "_")


def parse_modules_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep as {name: (relative path, [relative paths it depends on])}."""
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        path, sep, rest = line.partition(":")
        if sep:
            deps[module_name(path)] = (path, rest.split())
    return deps


def load_order(
    deps: dict[str, tuple[str, list[str]]], wanted: list[str], builtin: set[str]
) -> list[str]:
    """Module paths to insmod, dependencies first, each once, for `wanted`.

    Built-in modules are skipped; a name neither built in nor in modules.dep
    is an error (the kernel cannot provide it).
    """
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name in builtin:
            return
        seen.add(name)
        if name not in deps:
            raise MissingDependency(f"kernel module {name} is neither built in nor in modules.dep")
        path, needs = deps[name]
        for dep in needs:
            visit(module_name(dep))
        order.append(path)

    for name in wanted:
        visit(module_name(name))
    return order


# A driver of a bus binds the devices its transport module makes: loaded
# at once, the two NICs of a VM could be probed in either order (eth0 and
# eth1 swapped, the guest unreachable), so a module that uses the bus core
# loads after the transport, when the transport is a module.
TRANSPORTS = {"virtio": "virtio_pci"}


def load_rounds(
    deps: dict[str, tuple[str, list[str]]], wanted: list[str], builtin: set[str]
) -> list[list[str]]:
    """load_order's module paths in rounds: every dependency of a module,
    and the transport of a bus it drives (TRANSPORTS), is in an earlier
    round, so the modules of one round may load at once."""
    order = load_order(deps, wanted, builtin)
    loaded = {module_name(p) for p in order}
    round_of: dict[str, int] = {}

    def round_for(name: str) -> int:
        if name not in round_of:
            needs = {module_name(d) for d in deps[name][1]}
            needs |= {t for core, t in TRANSPORTS.items() if core in needs and t != name}
            earlier = [round_for(n) for n in needs if n in loaded]
            round_of[name] = 1 + max(earlier, default=-1)
        return round_of[name]

    rounds: list[list[str]] = []
    for path in order:
        r = round_for(module_name(path))
        rounds.extend([] for _ in range(r + 1 - len(rounds)))
        rounds[r].append(path)
    return rounds


def builtin_modules(text: str) -> set[str]:
    """Names listed in modules.builtin."""
    return {module_name(line) for line in text.split()}
