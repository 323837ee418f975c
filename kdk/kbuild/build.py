"""`kdk kernel build`: a kernel out of tree, into the user's cache.

One folder per build in kdk.kernel.kernels_cache(), named by its release
(6.1.192-kdk-debug):

    build/                       the O= tree: .config, vmlinux, the .o files;
                                 a valid KDIR for modules
    vmlinuz-REL, config-REL, System.map-REL    as Debian lays out /boot
    modules/lib/modules/REL/     modules_install's tree (build -> build/)
    build.log                    make's output of the last build
    kdk-build.json               what the last good build was made of

The config is the kernel's own work: `allnoconfig` with the kernel's
kvm_guest.config and kdk's fragments merged in (merge_config.sh -n), then
`olddefconfig`; every option of kdk's and the user's fragments must hold
afterwards. The compiler runs under ccache. A build whose inputs (the
source tree's files, the fragments, the flavour) are those of the last good
build does nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BuildFailed, KdkError, MissingDependency
from ..kernel import Kernel, built_kernels, kernels_cache, user_cache
from ..locks import file_lock
from . import config

FORMAT = "kdk-kernel-build-1"
DEBIAN_SOURCE = "linux-source-6.1"  # the host's series (Debian 12)
DEBIAN_TARBALL = Path("/usr/src") / f"{DEBIAN_SOURCE}.tar.xz"
NICE = 10  # a kernel build shares the machine with the user's other work
# Programs and headers the kernel's build needs, and the Debian package of each.
TOOLS = {
    "bison": "bison",
    "flex": "flex",
    "bc": "bc",
    "pahole": "dwarves",  # BTF for bcc
    "ccache": "ccache",
    "depmod": "kmod",
}
HEADERS = {"/usr/include/libelf.h": "libelf-dev", "/usr/include/openssl/ssl.h": "libssl-dev"}
# Files compiled by a cold build when no build of kdk's has counted them
# yet (kdk.config + debug.config on 6.1.192, measured); only the progress
# line's "of about N" uses it.
COLD_ESTIMATE = 1500
COMPILED = re.compile(r"^\s+CC( \[M\])?\s")
Say = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    kernel: Kernel
    built: bool  # False: nothing had changed since the last good build
    compiled: int  # files compiled by this build
    seconds: float  # wall time of make
    cpu_seconds: float  # user + system CPU of make and its children


def _apt_install(packages: list[str], why: str, say: Say) -> None:
    if shutil.which("apt-get") is None:
        raise MissingDependency(f"{why}: install {' '.join(packages)}")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    say(f"installing {' '.join(packages)} ({why}) with apt-get")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = [*sudo, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise MissingDependency(
            f"apt-get could not install {' '.join(packages)}", details=proc.stderr.strip()
        )


def ensure_tools(say: Say) -> None:
    """Install what the kernel's build needs and the host lacks."""
    missing = [pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    missing += [pkg for header, pkg in HEADERS.items() if not Path(header).exists()]
    if missing:
        _apt_install(sorted(set(missing)), "the kernel's build needs them", say)


def debian_source(say: Say) -> Path:
    """Debian's kernel source (the host's series), unpacked once into the
    cache; the package is installed first when missing."""
    if not DEBIAN_TARBALL.exists():
        _apt_install([DEBIAN_SOURCE], "the kernel source kdk builds by default", say)
    st = DEBIAN_TARBALL.stat()
    stamp = f"{st.st_size}:{st.st_mtime_ns}"
    sources = user_cache() / "sources"
    tree = sources / DEBIAN_SOURCE
    done = sources / f"{DEBIAN_SOURCE}.unpacked"
    if tree.is_dir() and done.exists() and done.read_text() == stamp:
        return tree
    say(f"unpacking {DEBIAN_TARBALL} into {sources}")
    tmp = sources / f".{DEBIAN_SOURCE}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    _run(["tar", "-xf", str(DEBIAN_TARBALL), "-C", str(tmp)], sources, "unpacking the source")
    shutil.rmtree(tree, ignore_errors=True)
    (tmp / DEBIAN_SOURCE).rename(tree)
    tmp.rmdir()
    done.write_text(stamp)
    return tree


def kernel_version(makefile: str) -> str:
    """VERSION.PATCHLEVEL.SUBLEVEL+EXTRAVERSION from a top Makefile's text."""
    parts = {}
    for name in ("VERSION", "PATCHLEVEL", "SUBLEVEL", "EXTRAVERSION"):
        m = re.search(rf"^{name}\s*=[ \t]*(\S*)", makefile, re.M)
        parts[name] = m.group(1) if m else ""
    if not parts["VERSION"] or not parts["PATCHLEVEL"]:
        raise KdkError("no VERSION/PATCHLEVEL in the Makefile: is this a kernel tree?")
    version = f"{parts['VERSION']}.{parts['PATCHLEVEL']}"
    if parts["SUBLEVEL"]:
        version += f".{parts['SUBLEVEL']}"
    return version + parts["EXTRAVERSION"]


def tree_stamp(tree: Path) -> str:
    """Changes when a file of the tree is added, removed or modified (its
    count and the sum and maximum of their mtimes; .git is skipped)."""
    count = total = newest = 0
    stack = [tree]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != ".git":
                        stack.append(Path(entry.path))
                    continue
                mtime = entry.stat(follow_symlinks=False).st_mtime_ns
                count += 1
                total = (total + mtime) % (1 << 64)
                newest = max(newest, mtime)
    return f"{count}:{total}:{newest}"


@dataclass(frozen=True)
class Plan:
    """What one `kdk kernel build` makes, and where."""

    source: Path
    flavour: str  # "", "debug", "kcsan"
    fragments: tuple[Path, ...]  # kdk's, then the user's
    release: str  # the release the build gets: 6.1.192-kdk-debug
    jobs: int

    @property
    def folder(self) -> Path:
        return kernels_cache() / self.release

    @property
    def build(self) -> Path:
        return self.folder / "build"

    @property
    def stamp(self) -> Path:
        return self.folder / "kdk-build.json"

    @property
    def modules_root(self) -> Path:
        return self.folder / "modules"

    def wanted(self) -> dict[str, str]:
        """Every option kdk's and the user's fragments set, later ones
        winning, with the release's own."""
        found: dict[str, str] = {}
        for frag in self.fragments:
            found.update(config.options(frag.read_text()))
        suffix = self.release.removeprefix(kernel_version(self._makefile()))
        found.update(config.options(config.localversion_fragment(suffix)))
        return found

    def _makefile(self) -> str:
        return (self.source / "Makefile").read_text()

    def inputs(self) -> str:
        """The hash of everything the build is made of."""
        h = hashlib.sha256(FORMAT.encode())
        h.update(f"{self.source.resolve()}\0{self.flavour}\0{self.release}\0".encode())
        for frag in self.fragments:  # by content: kdk's own are in each checkout
            h.update(f"{frag.name}\0".encode() + frag.read_bytes())
        h.update(tree_stamp(self.source).encode())
        return h.hexdigest()


def plan(source: Path | None, flavour: str, user: list[Path], jobs: int, say: Say) -> Plan:
    """The build asked for: Debian's source unless `source`, kdk's
    fragments for `flavour` and the user's."""
    for frag in user:
        if not frag.is_file():
            raise KdkError(f"{frag}: no such config fragment")
    if source is not None:
        source = source.resolve()
        if not (source / "Makefile").is_file() or not (source / "Kconfig").is_file():
            raise KdkError(f"{source}: not a kernel source tree (no Makefile and Kconfig)")
    tree = source or debian_source(say)
    version = kernel_version((tree / "Makefile").read_text())
    release = version + config.localversion(flavour, config.label_of(source))
    frags = tuple(p.resolve() for p in config.kdk_fragments(flavour, user))
    return Plan(tree, flavour, frags, release, jobs)


def _run(argv: list[str], cwd: Path, what: str) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildFailed(f"{what} failed", details=(proc.stdout + proc.stderr).strip())
    return proc.stdout


def configure(p: Plan) -> None:
    """The build's .config from the kernel's own tools; it is left as it
    was (mtime too, so make sees no change) when the result is the same.
    BuildFailed names the fragments' options that did not hold."""
    p.build.mkdir(parents=True, exist_ok=True)
    dot = p.build / ".config"
    before = dot.read_bytes() if dot.exists() else None
    times = (dot.stat().st_atime_ns, dot.stat().st_mtime_ns) if before is not None else None
    suffix = p.release.removeprefix(kernel_version(p._makefile()))
    lv = p.folder / "localversion.config"
    lv.write_text(config.localversion_fragment(suffix))
    base = [str(p.source / config.KVM_GUEST)] if (p.source / config.KVM_GUEST).exists() else []
    merge = [str(p.source / "scripts/kconfig/merge_config.sh"), "-n", "-O", str(p.build)]
    _run([*merge, *base, *map(str, p.fragments), str(lv)], p.source, "merge_config.sh")
    _run(["make", "-s", f"O={p.build}", "olddefconfig"], p.source, "make olddefconfig")
    if dropped := config.missing(p.wanted(), config.options(dot.read_text())):
        raise BuildFailed(f"the config lost options its fragments set: {', '.join(dropped)}")
    if before is not None and times is not None and dot.read_bytes() == before:
        os.utime(dot, ns=times)


def _ccache_env() -> dict[str, str]:
    """ccache in kdk's cache (unless the user chose a folder), big enough
    for two kernels with debug info."""
    env = dict(os.environ)
    if "CCACHE_DIR" not in env:
        folder = user_cache() / "ccache"
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "ccache.conf"
        if not conf.exists():
            conf.write_text("max_size = 20G\n")
        env["CCACHE_DIR"] = str(folder)
    return env


def expected_files(p: Plan) -> tuple[int, bool]:
    """How many files a full build compiles: counted by an earlier build
    (this one's or another of the same flavour), else kdk's estimate;
    (count, whether it is an estimate)."""
    for stamp in (p.stamp, *(k.image.parent / "kdk-build.json" for k in built_kernels())):
        try:
            rec = json.loads(stamp.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("flavour") == p.flavour and rec.get("full_compiled"):
            return int(rec["full_compiled"]), False
    return COLD_ESTIMATE, True


def progress_line(compiled: int, expected: int, estimate: bool, elapsed: float) -> str:
    """The progress line: files compiled of those a full build compiles."""
    mins, secs = divmod(int(elapsed), 60)
    percent = min(99, 100 * compiled // max(expected, 1))
    about = "about " if estimate else ""
    return f"compiled {compiled} of {about}{expected} files ({percent}%), {mins}:{secs:02d}"


def make(p: Plan, step: Say) -> tuple[int, float, float]:
    """Run the build (vmlinux, bzImage, modules), naming the progress every
    5% of the files; (files compiled, wall seconds, CPU seconds)."""
    expected, estimate = expected_files(p)
    argv = [
        "nice",
        "-n",
        str(NICE),
        "make",
        f"O={p.build}",
        f"-j{p.jobs}",
        "CC=ccache gcc",
        "LOCALVERSION=",
        "all",
    ]
    log_path = p.folder / "build.log"
    start = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    compiled = 0
    tail: list[str] = []
    step(progress_line(0, expected, estimate, 0))
    with log_path.open("w", buffering=1) as log:  # line by line: `tail -f` shows it
        proc = subprocess.Popen(
            argv,
            cwd=p.source,
            env=_ccache_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            tail = [*tail[-59:], line.rstrip()]
            if COMPILED.match(line):
                compiled += 1
                if (20 * compiled // max(expected, 1)) != (20 * (compiled - 1) // max(expected, 1)):
                    step(progress_line(compiled, expected, estimate, time.monotonic() - start))
        rc = proc.wait()
    wall = time.monotonic() - start
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    if rc != 0:
        errors = [line for line in tail if "error" in line.lower() or "***" in line]
        raise BuildFailed(
            f"the kernel build failed (make exit {rc}); all of it in {log_path}",
            details="\n".join(errors[-20:] or tail[-20:]),
        )
    return compiled, wall, cpu


def _copy_if_changed(src: Path, dst: Path) -> None:
    """Copy keeping src's mtime; nothing when dst already is that copy (the
    initramfs and the extracted vmlinux are cached by the image's mtime)."""
    st = src.stat()
    if (
        dst.exists()
        and dst.stat().st_size == st.st_size
        and dst.stat().st_mtime_ns == st.st_mtime_ns
    ):
        return
    tmp = dst.with_name(f".{dst.name}.tmp")
    shutil.copy2(src, tmp)
    tmp.replace(dst)


def install(p: Plan, step: Say) -> Kernel:
    """Modules into the build's own modules tree, image, config and
    System.map beside it; the Kernel it is now."""
    step("installing modules")
    release = (p.build / "include/config/kernel.release").read_text().strip()
    shutil.rmtree(p.modules_root / "lib" / "modules" / release, ignore_errors=True)
    _run(
        [
            "make",
            f"O={p.build}",
            "LOCALVERSION=",
            f"INSTALL_MOD_PATH={p.modules_root}",
            "modules_install",
        ],
        p.source,
        "make modules_install",
    )
    for old in p.folder.glob("*-*"):  # another release's files (the tree's version moved)
        if old.name.split("-", 1)[0] in ("vmlinuz", "config", "System.map") and not (
            old.name.endswith(release)
        ):
            old.unlink()
    _copy_if_changed(p.build / "System.map", p.folder / f"System.map-{release}")
    _copy_if_changed(p.build / ".config", p.folder / f"config-{release}")
    _copy_if_changed(p.build / "arch/x86/boot/bzImage", p.folder / f"vmlinuz-{release}")
    return Kernel(
        release, p.folder / f"vmlinuz-{release}", p.modules_root / "lib" / "modules" / release
    )


def _last_build(p: Plan) -> dict[str, Any]:
    """What the last good build of `p`'s folder wrote in its stamp ({} when none)."""
    try:
        last = json.loads(p.stamp.read_text())
    except (OSError, ValueError):
        return {}
    return last if isinstance(last, dict) else {}


def current(p: Plan, inputs: str | None = None) -> Kernel | None:
    """The kernel `p` makes when its last good build had the same inputs
    (`inputs`, else read now: a walk of the source tree) and is there:
    what `build` would return without building."""
    done = [k for k in built_kernels() if k.image.parent == p.folder]
    if not done:
        return None
    return done[0] if _last_build(p).get("inputs") == (inputs or p.inputs()) else None


def build(p: Plan, say: Say, step: Say) -> BuildResult:
    """Configure, compile and install `p`; nothing when the inputs are
    those of the last good build and its kernel is there."""
    ensure_tools(say)
    p.folder.mkdir(parents=True, exist_ok=True)
    busy = f"another `kdk kernel build` of {p.release} is running"
    with file_lock(p.folder / ".lock", 5, busy):
        inputs = p.inputs()
        if (kernel := current(p, inputs)) is not None:
            return BuildResult(kernel, False, 0, 0.0, 0.0)
        last = _last_build(p)
        step("configuring")
        configure(p)
        compiled, wall, cpu = make(p, step)
        kernel = install(p, step)
        full = max(compiled, int(last.get("full_compiled", 0)))
        p.stamp.write_text(
            json.dumps(
                {
                    "inputs": inputs,
                    "release": kernel.release,
                    "source": str(p.source),
                    "flavour": p.flavour,
                    "fragments": [str(f) for f in p.fragments],
                    "compiled": compiled,
                    "full_compiled": full,
                    "seconds": round(wall, 1),
                    "cpu_seconds": round(cpu, 1),
                    "built_at": time.time(),
                },
                indent=1,
            )
            + "\n"
        )
        return BuildResult(kernel, True, compiled, wall, cpu)


def remove(name: str) -> Path:
    """Delete the built kernel `name` (its folder's name or release)."""
    for k in built_kernels():
        if name in (k.release, k.image.parent.name):
            shutil.rmtree(k.image.parent)
            return k.image.parent
    folder = kernels_cache() / name
    if name and "/" not in name and folder.is_dir():  # an unfinished build
        shutil.rmtree(folder)
        return folder
    have = ", ".join(k.release for k in built_kernels()) or "none"
    raise KdkError(f"no kernel {name!r} built by kdk (built: {have})")
