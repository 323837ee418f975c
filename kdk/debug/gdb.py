"""`kdk gdb`: gdb on the running guest kernel, through QEMU's gdb stub.

Every VM has the stub on a unix socket in its state folder (kdk/vm/qemu.py),
so gdb attaches without a reboot; attaching stops the guest's CPUs until gdb
continues or detaches (quitting gdb detaches: the guest goes on). A module's
symbols are loaded with add-symbol-file from a copy of the .ko that was
loaded (its build id is checked against the loaded module's), linked with
its sections at the addresses the guest kernel gave them
(/sys/module/NAME/sections), so
`break kdkchar_write`, `bt`, `list` and `print` work with source lines.

Kernel symbols need the kernel's debug info: Debian's
linux-image-REL-dbg package installs vmlinux with it as
/usr/lib/debug/boot/vmlinux-REL (for 6.1: 860 MB to download, 5.6 GB
installed); kdk uses it when it is there. Without it, kdk gives gdb the
kernel's function names from the guest's /proc/kallsyms (an ELF file of
symbols only, made once per kernel: the guest boots with nokaslr, so the
addresses do not change): backtraces and breakpoints name kernel
functions, without source lines or types; the module's functions,
variables and source lines work all the same.

While `kdk gdb` runs, a marker file in the state folder names its process.
A command already running in the guest then waits while the guest is
silent (it may sit on a breakpoint) instead of taking it for hung; a new
command that gets no answer says the guest may be held in gdb (GuestHeld)
instead of booting a fresh VM.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import struct
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import KdkError, MissingDependency
from ..kernel import built_kernels, module_name, select_kernel
from ..modules.info import modinfo
from ..session import Session
from ..state import GDB_MARKER, GDB_SOCKET

GDB = "gdb"
# The kernel's own functions (t/T) in /proc/kallsyms; modules' are "[name]"-tagged.
KALLSYMS_SCRIPT = "grep -E ' [tT] ' /proc/kallsyms | grep -v '\\['"
DEBUG_VMLINUX = Path("/usr/lib/debug/boot")  # where Debian's -dbg package puts vmlinux
BUILD_ID = ".note.gnu.build-id"


def debug_vmlinux(release: str, folder: Path = DEBUG_VMLINUX) -> Path | None:
    """The kernel image with debug info: the -dbg package's, if installed,
    or the one in the build tree of a kernel kdk built."""
    path = folder / f"vmlinux-{release}"
    if path.is_file():
        return path
    for k in built_kernels():
        if k.release == release and (k.build_dir / "vmlinux").is_file():
            return k.build_dir / "vmlinux"
    return None


def kallsyms_elf(kallsyms: str, target: Path) -> Path:
    """Write `target`: an ELF file that holds only the function symbols of
    `kallsyms` (text from KALLSYMS_SCRIPT), for gdb to name kernel code."""
    funcs = sorted(
        (int(f[0], 16), f[2])
        for f in map(str.split, kallsyms.splitlines())
        if len(f) == 3 and f[1] in "tT"
    )
    if not funcs:
        raise KdkError("no kernel symbols in the guest's /proc/kallsyms")
    low, high = funcs[0][0], funcs[-1][0] + 16
    names = bytearray(b"\0")
    symbols = [bytes(24)]
    for i, (addr, name) in enumerate(funcs):
        size = (funcs[i + 1][0] if i + 1 < len(funcs) else high) - addr
        symbols.append(struct.pack("<IBBHQQ", len(names), 0x12, 0, 1, addr, size))  # FUNC, GLOBAL
        names += name.encode() + b"\0"
    symtab = b"".join(symbols)
    shstrtab = b"\0.text\0.symtab\0.strtab\0.shstrtab\0"
    offsets = [64, 64 + len(symtab), 64 + len(symtab) + len(names)]
    headers_at = (offsets[2] + len(shstrtab) + 7) & ~7

    def section(*fields: int) -> bytes:  # name type flags addr offset size link info align entsize
        return struct.pack("<IIQQQQIIQQ", *fields)

    sections = [
        section(0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        section(1, 8, 6, low, 0, high - low, 0, 0, 16, 0),  # .text: NOBITS, AX
        section(7, 2, 0, 0, offsets[0], len(symtab), 3, 1, 8, 24),
        section(15, 3, 0, 0, offsets[1], len(names), 0, 0, 1, 0),
        section(23, 3, 0, 0, offsets[2], len(shstrtab), 0, 0, 1, 0),
    ]
    header = (
        b"\x7fELF\x02\x01\x01"
        + bytes(9)
        + struct.pack(
            "<HHIQQQIHHHHHH", 2, 62, 1, 0, 0, headers_at, 0, 64, 0, 0, 64, len(sections), 4
        )
    )  # 64-bit little-endian ET_EXEC for x86-64, sections only
    data = header + symtab + names + shstrtab
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data + bytes(headers_at - len(data)) + b"".join(sections))
    tmp.replace(target)
    return target


def sections_script(name: str) -> str:
    """A guest shell script printing "sections NAME..." for the sections of
    the loaded module `name`, their addresses in that order, one a line, and
    "build-id HEX" (exit 3: not loaded). One `cat` reads all addresses: a
    process per file is slow under emulation, and the files answer only a
    read of the whole line (no shell `read`)."""
    notes = f"/sys/module/{name}/notes/{BUILD_ID}"
    return "\n".join(
        [
            f"cd /sys/module/{name}/sections 2>/dev/null || exit 3",
            'names=; for f in .* *; do [ -f "$f" ] && names="$names $f"; done',
            'echo "sections$names"',
            "cat $names",
            f"[ ! -f {notes} ] || echo \"build-id $(od -An -v -tx1 {notes} | tr -d ' \\n')\"",
        ]
    )


def ko_sections(ko: Path) -> tuple[list[str], str]:
    """The names of a module's loaded (SHF_ALLOC) sections and its build id."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with ko.open("rb") as f:
            elf = ELFFile(f)
            names = [s.name for s in elf.iter_sections() if s["sh_flags"] & 0x2]
            note = elf.get_section_by_name(BUILD_ID)
            build_id = note.data().hex() if note is not None else ""
    except (ELFError, OSError) as e:
        raise KdkError(f"{ko}: not a kernel module ({e})") from None
    return names, build_id


def symbol_file_command(ko: Path, name: str, guest_output: str, folder: Path) -> str:
    """gdb's add-symbol-file for `ko` at the addresses `sections_script`
    printed; KdkError when the loaded module is not built from this file.

    gdb is given a copy of `ko` linked (ld) with each section at its
    address in the guest, not the .ko with `-s SECTION ADDRESS` options:
    on Debian 6.12's modules (DWARF 5) gdb 13 relocates the line table of
    every section as if it were at .text's address, so a line in .text was
    named after the .init.text function at the same offset. Init sections
    are in too, at the addresses they had before the kernel freed them.
    References to the kernel's symbols stay unresolved in the copy: gdb
    reads code from the guest's memory, not from the file."""
    lines = guest_output.splitlines()
    sections = next((ln.split()[1:] for ln in lines if ln.startswith("sections")), [])
    values = [ln for ln in lines if re.fullmatch(r"0x[0-9a-f]+", ln)]
    addresses = dict(zip(sections, values, strict=False))
    loaded_id = next((ln.split()[1] for ln in lines if ln.startswith("build-id ")), "")
    names, build_id = ko_sections(ko)
    if loaded_id and build_id and loaded_id != build_id:
        raise KdkError(
            f"the loaded {name} is not the one in {ko} (rebuilt since it was "
            f"loaded?): `kdk load {name}` again"
        )
    if ".text" not in addresses:
        raise KdkError(f"no .text address for {name} in the guest's /sys/module/{name}/sections")
    ld = shutil.which("ld")
    if ld is None:
        raise MissingDependency("ld not found: install the binutils package")
    # One output section per loaded section, at its address (ld's own script
    # would merge .text.unlikely into .text, ahead of it).
    placed = [f"{s} {addresses[s]} : {{ *({s}) }}" for s in names if s in addresses]
    folder.mkdir(parents=True, exist_ok=True)
    out, script = folder / f"{name}.elf", folder / f"{name}.ld"
    script.write_text("SECTIONS {\n" + "\n".join(placed) + "\n}\n")
    out.unlink(missing_ok=True)
    # Unresolved kernel symbols make relocations that do not fit: written anyway.
    argv = [
        ld,
        "-o",
        str(out),
        "-e",
        "0",
        "--unresolved-symbols=ignore-all",
        "--noinhibit-exec",
        "--no-check-sections",
        "-T",
        str(script),
        str(ko),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if not out.exists():
        raise KdkError(
            f"cannot link {ko} at the guest's addresses for gdb: "
            f"{proc.stderr.strip().splitlines()[-1:] or proc.returncode}"
        )
    return f"add-symbol-file {out}"


def gdb_argv(
    state: Path, vmlinux: Path | None, symbol_file: str | None, args: Sequence[str] = ()
) -> list[str]:
    """gdb attached to the VM of state folder `state`: the kernel's symbols
    (`vmlinux`: the -dbg package's, a built kernel's with the kernel's gdb
    scripts, or kallsyms_elf's), the module's, then the user's own
    arguments."""
    path = shutil.which(GDB)
    if path is None:
        raise MissingDependency("gdb not found: install the gdb package")
    if not (state / GDB_SOCKET).exists():
        raise KdkError(
            f"the VM has no gdb stub at {state / GDB_SOCKET} (its path is too long for a "
            "socket, or an older kdk booted it): `kdk down` and `kdk up`"
        )
    argv = [path, "-q"]
    if vmlinux is not None:
        scripts = vmlinux.parent / "vmlinux-gdb.py"  # a build tree's: the lx- commands
        if scripts.exists():
            argv += ["-iex", f"add-auto-load-safe-path {scripts.resolve().parent}"]
        argv.append(str(vmlinux))
    argv += ["-ex", f"target remote {state / GDB_SOCKET}"]
    if symbol_file:  # confirm off: add-symbol-file asks (y or n)
        argv += ["-ex", "set confirm off", "-ex", symbol_file, "-ex", "set confirm on"]
    return [*argv, *args]


def command(session: Session, ko: Path | None, cache: Path, args: Sequence[str] = ()) -> list[str]:
    """The gdb command line attached to the session's guest, with the
    symbols of module `ko` where the guest loaded it; the kernel's own from
    its -dbg package, else from the guest's /proc/kallsyms (an ELF file of
    symbols made once per kernel in `cache`). `args` are gdb's own."""
    rec = session.backend.require()
    state = session.backend.state.path
    symbol_file = None
    if ko is not None:
        name = modinfo(ko).get("name") or module_name(ko.name)
        with session.guest() as g:
            found = g.run(sections_script(name), timeout=30)
        if found.exit_code == 3:
            raise KdkError(f"{name} is not loaded in the guest: `kdk load {name}` first")
        symbol_file = symbol_file_command(ko, name, found.stdout.decode(), state / "gdb")
    vmlinux = debug_vmlinux(rec.kernel)
    if vmlinux is None:
        image = select_kernel(rec.kernel).image.stat()
        vmlinux = cache / f"kallsyms-{rec.kernel}-{image.st_mtime_ns}.elf"
        if not vmlinux.exists():
            with session.guest() as g:
                text = g.check(KALLSYMS_SCRIPT, timeout=120).stdout.decode()
            kallsyms_elf(text, vmlinux)
    return gdb_argv(state, vmlinux, symbol_file, args)


def run(argv: list[str], state: Path) -> int:
    """Run gdb (`argv`, from `command`) on the terminal; its exit code."""
    with holding(state):
        return subprocess.run(argv).returncode


@contextmanager
def holding(state: Path) -> Iterator[None]:
    """While the block runs (gdb attached): the marker names this process,
    and Ctrl-C goes to gdb (to stop the guest), not to kdk."""
    marker = state / GDB_MARKER
    marker.write_text(f"{os.getpid()}\n")
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        marker.unlink(missing_ok=True)
