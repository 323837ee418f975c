"""The guest shell scripts that load and unload a module with what it needs.

One script per command, so a load with its providers costs one guest
round trip: note the kernel log's position, modprobe the kernel modules it
needs, insmod the providers that are not loaded yet, reload the module
itself, then print the log records all of that produced. The exit code says
which step failed.
"""

from __future__ import annotations

import io
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path
from shlex import quote as q  # names come from users

from ..errors import LoadFailed
from ..klog import kmsg
from .errnos import insmod_reason

STAGE_DIR = "/run/kdk/staged"  # where modules from outside the project are unpacked
RELOAD_FAILED = 100  # the module was loaded and rmmod (for the reload) failed
MODPROBE_FAILED = 101  # a kernel module it needs could not be loaded
PROVIDER_FAILED = 110  # + i: insmod of the i-th provider failed


@dataclass(frozen=True)
class Insmod:
    """One module to insmod: its name in the kernel and its path in the guest."""

    name: str
    path: str


def staged_path(ko: Path) -> str:
    return f"{STAGE_DIR}/{ko.name}"


def stage(kos: list[Path]) -> bytes:
    """A tar archive of the files, for `tar -x` into STAGE_DIR in the guest."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for ko in kos:
            tar.add(ko, arcname=ko.name)
    return buf.getvalue()


def _sysfs(module: str) -> str:
    """A module's sysfs folder, quoted for the guest's shell."""
    return q(f"/sys/module/{module}")


def load_script(
    target: Insmod,
    providers: list[Insmod],
    kernel_modules: list[str],
    params: list[str],
    staged: bool,
) -> str:
    """The script that loads `target` after what it needs; the taint before
    and after goes to stdout after the log records (see api.Kdk.load)."""
    # The taint before and after, read by the awk that reads the log.
    tainted = 'getline t < "/proc/sys/kernel/tainted"; '
    lines = [
        "set -- $(" + kmsg.last_seq(tainted + "print t") + ")",
        'before=$1; export KDK_TAINT="$2"',
    ]
    if staged:
        lines.append(f"mkdir -p {STAGE_DIR} && tar -x -C {STAGE_DIR} || exit 1")
    lines.append("rc=0")
    for m in kernel_modules:
        lines.append(f"[ -d {_sysfs(m)} ] || modprobe -q {q(m)} || rc={MODPROBE_FAILED}")
    for i, p in enumerate(providers):
        lines.append(
            f"[ $rc != 0 ] || [ -d {_sysfs(p.name)} ] "
            f"|| insmod {shlex.quote(p.path)} || rc={PROVIDER_FAILED + i}"
        )
    lines += [
        f"[ $rc != 0 ] || [ ! -d {_sysfs(target.name)} ] || rmmod {q(target.name)} "
        f"|| rc={RELOAD_FAILED}",
        f"[ $rc != 0 ] || insmod {shlex.quote(target.path)} {shlex.join(params)} || rc=$?",
        kmsg.dump_since("before", tainted + 'print "kdk-taint " ENVIRON["KDK_TAINT"] " " t'),
        "exit $rc",
    ]
    return "\n".join(lines)


def load_error(
    code: int, target: Insmod, providers: list[Insmod], stderr: str, log: list[str]
) -> LoadFailed:
    """The error for a load script's non-zero exit `code`."""
    reason = insmod_reason(stderr, log)
    details = "\n".join(log)
    if code == RELOAD_FAILED:
        what = f"{target.name} is loaded and could not be unloaded for the reload"
    elif code == MODPROBE_FAILED:
        what = f"a kernel module {target.name} needs could not be loaded"
    elif PROVIDER_FAILED <= code < PROVIDER_FAILED + len(providers):
        what = f"insmod {providers[code - PROVIDER_FAILED].name} (needed by {target.name}) failed"
    else:
        what = f"insmod {target.name} failed"
    return LoadFailed(f"{what}: {reason}", details)


def unload_script(target: str, dependents: list[str], providers: list[str]) -> str:
    """The script that unloads the loaded modules that use `target` (users
    first), `target`, then its unused providers (the last loaded first)."""
    unused = (
        f'[ "$(cat {_sysfs(p)}/refcnt 2>/dev/null)" != 0 ] || rmmod {q(p)}'
        for p in reversed(providers)
    )
    return "\n".join(
        [
            "before=$(" + kmsg.LAST_SEQ + ")",
            f"[ -d {_sysfs(target)} ] || {{ echo {q(target + ' is not loaded')} >&2; exit 1; }}",
            " && ".join(
                [
                    *(f"{{ [ ! -d {_sysfs(d)} ] || rmmod {q(d)}; }}" for d in dependents),
                    f"rmmod {q(target)}",
                    *(f"{{ {u}; }}" for u in unused),
                ]
            ),
            "rc=$?",
            kmsg.dump_since("before"),
            "exit $rc",
        ]
    )
