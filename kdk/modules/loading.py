"""The guest shell scripts that load and unload a module with what it needs.

One script per command, so a load with its providers costs one guest
round trip: note the kernel log's position, modprobe the kernel modules it
needs, insmod the providers that are not loaded yet, reload the module
itself, then print the log records all of that produced. The exit code says
which step failed.

A module's init that does not return leaves insmod in the kernel for good:
each insmod runs in the background and the script waits for it a bounded
time (init_timeout); then it reports the module as stuck, with the insmod's
kernel stack, and leaves it so: nothing can end an init from outside. The
module stays "coming" (Loading in /proc/modules) until its init returns, and
neither rmmod nor a new insmod can touch it until then.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import re
import shlex
import tarfile
from dataclasses import dataclass
from pathlib import Path
from shlex import quote as q  # names come from users

from ..errors import InitHung, KdkError, LoadFailed
from ..inguest import BUSYBOX
from ..klog import kmsg
from .errnos import insmod_reason

STAGE_DIR = "/run/kdk/staged"  # where modules from outside the project are unpacked
RELOAD_FAILED = 100  # the module was loaded and rmmod (for the reload) failed
MODPROBE_FAILED = 101  # a kernel module it needs could not be loaded
INIT_HUNG = 102  # a module's init has not returned; the report is on stderr
PROVIDER_FAILED = 110  # + i: insmod of the i-th provider failed
INIT_TIMEOUT = 60.0  # s each module's init may take (KDK_INIT_TIMEOUT), then it is reported
SCRIPT_TIMEOUT = 30.0  # s the host gives a load script beyond its inits' bounds

# Guest shell functions (dash; builtins only, as each program started costs
# ~50 ms under TCG). `coming M`: M's init has not returned. `stuck M [S]`:
# says so on stderr for the host (see stuck_details): the marker (with S,
# the seconds waited), each insmod or modprobe whose kernel stack is in M,
# with that stack, and M's line of /proc/modules.
STUCK_FUNCTIONS = r"""coming() {
    { read -r s < /sys/module/$1/initstate; } 2>/dev/null && [ "$s" = coming ]
}
stuck() {
    echo "kdk-stuck $*" >&2
    for d in /proc/[0-9]*; do
        { read -r c < $d/comm; } 2>/dev/null || continue
        case $c in insmod|modprobe) ;; busybox) c=insmod ;; *) continue ;; esac
        k=; { while read -r l; do k="$k
$l"; done < $d/stack; } 2>/dev/null
        case $k in *"[$1]"*) printf 'kdk-task %s %s%s\n' "${d#/proc/}" "$c" "$k" >&2 ;; esac
    done
    while read -r m l; do [ "$m" != "$1" ] || echo "kdk-module $m $l" >&2; done < /proc/modules
}"""
# `load M FILE ARGS...`: insmod FILE ARGS ($i: INSMOD), whose module is M,
# waiting $T s at most: insmod runs in the background beside a `sleep $T`,
# and ends it when it is done first. rmmod and sleep are busybox's when
# there is one (see BUSYBOX): kmod's link libcrypto and cost ~90 ms more
# each under TCG. Busybox's and kdk's insmod exit with the errno, kmod's
# with 1: the status is 1 either way (an errno could read as one of the
# script's own codes), or INIT_HUNG once `stuck` reported M (busybox's
# insmod is its comm, named insmod there). insmod's stderr goes
# through a pipe of the shell's own, never to the script's: the connection
# that runs the script would wait for every process that holds its output,
# the stuck insmod too.
LOAD_FUNCTION = f"""load() {{
    n=$1; shift
    $b sleep $T </dev/null >/dev/null 2>&1 & t=$!
    {{ e=$($i "$@" 2>&1); r=$?; kill $t 2>/dev/null
        [ -z "$e" ] || printf '%s\\n' "$e" >&2; [ $r = 0 ] || exit 1; }} &
    w=$!
    if wait $t 2>/dev/null && coming $n; then stuck $n $T; kill $w; return {INIT_HUNG}; fi
    wait $w
}}"""


# The guest's insmod: kdk's (kdk/inguest/insmod.c, from the initramfs,
# static), which loads once; else busybox's, which tries init_module after
# a failed finit_module (a failing init would run twice), else kmod's.
GUEST_INSMOD = "/run/kdk/insmod"
INSMOD = f'i="$b insmod"; [ ! -x {GUEST_INSMOD} ] || i={GUEST_INSMOD}'


def kernel_param(param: str) -> str:
    """`param` (name=value) as the kernel is to read it from insmod's one
    string of parameters, which it splits at white space outside double
    quotes: a value with white space is quoted (`greeting=good day` would
    be greeting=good and an unknown parameter `day`). A value with a quote
    of its own is left as it was written."""
    name, eq, value = param.partition("=")
    if eq and '"' not in value and any(c.isspace() for c in value):
        return f'{name}="{value}"'
    return param


@dataclass(frozen=True)
class Insmod:
    """One module to insmod: its name in the kernel and its path in the guest."""

    name: str
    path: str


def staged_path(ko: Path) -> str:
    return f"{STAGE_DIR}/{ko.name}"


def stage(kos: list[Path]) -> bytes:
    """A tar archive of the files, for `tar -x` into STAGE_DIR in the guest
    (ustar: busybox's tar, which a load script runs under busybox's sh,
    reads it whole)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for ko in kos:
            tar.add(ko, arcname=ko.name)
    return buf.getvalue()


def _sysfs(module: str) -> str:
    """A module's sysfs folder, quoted for the guest's shell."""
    return q(f"/sys/module/{module}")


def _not_coming(module: str) -> str:
    """Shell that stops a load script (exit INIT_HUNG) when `module` is
    still in its init since an earlier load: an insmod of it would wait for
    that init, and an insmod of a module that uses it would give up after
    30 s with its symbols "unknown"."""
    return f"[ $rc != 0 ] || ! coming {q(module)} || {{ stuck {q(module)}; rc={INIT_HUNG}; }}"


def load_script(
    target: Insmod,
    providers: list[Insmod],
    kernel_modules: list[str],
    params: list[str],
    staged: bool,
    run: str = "",
) -> str:
    """The script that loads `target` after what it needs; the taint before
    and after goes to stdout after the log records (see kdk.modules.loader).
    `run`: a command that loads `target` instead of insmod (the loads of
    kdk.modules.faultinject)."""
    lines = [mark("start"), BUSYBOX, INSMOD, kmsg.SKIP_OLD, f"taint=$({TAINTED})"]
    if staged:
        lines.append(f"mkdir -p {STAGE_DIR} && tar -x -C {STAGE_DIR} || exit 1")
    lines += [STUCK_FUNCTIONS, LOAD_FUNCTION, f"T={init_timeout():g}", "rc=0", mark("log position")]
    for m in kernel_modules:
        lines.append(f"[ -d {_sysfs(m)} ] || /sbin/modprobe -q {q(m)} || rc={MODPROBE_FAILED}")
    for i, p in enumerate(providers):
        failed = f"{{ rc=$?; [ $rc = {INIT_HUNG} ] || rc={PROVIDER_FAILED + i}; }}"
        load = f"load {q(p.name)} {q(p.path)}"
        lines.append(_not_coming(p.name))
        lines.append(f"[ $rc != 0 ] || [ -d {_sysfs(p.name)} ] || {load} || {failed}")
    name = q(target.name)
    insmod = f"load {name} {q(target.path)} {shlex.join(map(kernel_param, params))}"
    lines += [
        mark("what it needs"),
        _not_coming(target.name),
        f"[ $rc != 0 ] || [ ! -d {_sysfs(target.name)} ] || $b rmmod {name} || rc={RELOAD_FAILED}",
        mark("rmmod"),
        f"[ $rc != 0 ] || {run or insmod} || rc=$?",
        mark("insmod"),
        kmsg.NEW_RECORDS,
        f'echo "kdk-taint $taint $({TAINTED})"',
        mark("log read"),
        "exit $rc",
    ]
    return "\n".join(lines)


def init_timeout() -> float:
    """How long a load waits for each module's init: $KDK_INIT_TIMEOUT
    seconds, else INIT_TIMEOUT."""
    text = os.environ.get("KDK_INIT_TIMEOUT", "")
    if not text:
        return INIT_TIMEOUT
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 < seconds < math.inf:
        raise KdkError(f"KDK_INIT_TIMEOUT={text}: not a number of seconds above 0")
    return seconds


# When each phase of a load script ended, on its stdout: `kdk-time PHASE
# UPTIME` (the guest's /proc/uptime, in steps of 10 ms; a builtin read, no
# program started). The first mark is "start".
TIME_MARK = re.compile(r"^kdk-time (.+) (\d+\.\d+)$", re.M)


# The kernel's taint, read in one read(): a sysctl file answers only a read
# at offset 0, so the shell's `read`, one byte at a time, gets "1" of 12800.
TAINTED = "$b cat /proc/sys/kernel/tainted"


def mark(phase: str) -> str:
    """Shell that notes on stdout that `phase` of a script ended."""
    return f"read -r up _ < /proc/uptime; echo kdk-time {q(phase)} $up"


def guest_times(stdout: str) -> list[tuple[str, float]]:
    """The seconds each phase of a script took in the guest, from its marks."""
    marks = [(m.group(1), float(m.group(2))) for m in TIME_MARK.finditer(stdout)]
    return [(phase, t - prev) for (_, prev), (phase, t) in itertools.pairwise(marks)]


def script_timeout(insmods: int) -> float:
    """The host's bound on a load script that insmods `insmods` modules: a
    backstop, beyond the guest's bound on each of them (the guest reports a
    stuck init itself)."""
    return insmods * init_timeout() + SCRIPT_TIMEOUT


STACK_LINE = re.compile(r"^\[<[0-9a-f]+>\] ")


def stuck_details(stderr: str) -> tuple[str, str, str]:
    """From a script's report of a module whose init has not returned (see
    STUCK_FUNCTIONS): the module's name, the seconds the script waited for
    it ("" when it was so already), and the details for the user: which
    task is in its init and where, its state, and what to do."""
    name, waited, details = "", "", []
    for line in stderr[stderr.find("kdk-stuck ") :].splitlines():
        word, _, rest = line.partition(" ")
        if word == "kdk-stuck":
            name, _, waited = rest.partition(" ")
        elif word == "kdk-task":
            pid, _, program = rest.partition(" ")
            details.append(f"{program} (pid {pid}) is in {name}'s init, at:")
        elif STACK_LINE.match(line):
            details.append("  " + STACK_LINE.sub("", line))
        elif word == "kdk-module":
            details.append(f"/proc/modules: {rest}")
    if not any(d.startswith("  ") for d in details):
        details.insert(0, f"no insmod or modprobe has {name}'s init on its kernel stack")
    details.append(
        f"{name} stays half-loaded (state Loading in /proc/modules, coming in "
        f"/sys/module/{name}/initstate) until its init returns: until then it can be "
        "neither unloaded nor loaded again. An init that never returns keeps it so until "
        "the VM is rebooted: kdk down && kdk up"
    )
    return name, waited, "\n".join(details)


def load_error(
    code: int,
    target: Insmod,
    providers: list[Insmod],
    stderr: str,
    log: list[str],
    params: list[str],
) -> LoadFailed:
    """The error for a load script's non-zero exit `code`; `log` holds the
    kernel log lines of the load, `params` the target's parameters."""
    details = "\n".join(log)
    if code == INIT_HUNG:
        name, waited, stuck = stuck_details(stderr)
        since = f"after {waited} s" if waited else "since an earlier load"
        return InitHung(f"{name}'s init has not returned {since}", f"{details}\n{stuck}".strip())
    given: list[str] = []  # the parameters insmod was given
    if code == RELOAD_FAILED:
        what = f"{target.name} is loaded and could not be unloaded for the reload"
    elif code == MODPROBE_FAILED:
        what = f"a kernel module {target.name} needs could not be loaded"
    elif PROVIDER_FAILED <= code < PROVIDER_FAILED + len(providers):
        what = f"insmod {providers[code - PROVIDER_FAILED].name} (needed by {target.name}) failed"
    else:
        what, given = f"insmod {target.name} failed", params
    return LoadFailed(f"{what}: {insmod_reason(stderr, log, given)}", details)


KMEMLEAK = "/sys/kernel/debug/kmemleak"
# Around kmemleak's list in an unload script's output; NO_KMEMLEAK when the
# kernel has none.
LEAKS_BEGIN, LEAKS_END, NO_KMEMLEAK = "kdk-kmemleak-begin", "kdk-kmemleak-end", "kdk-no-kmemleak"
# kmemleak reports an object only when a scan finds it unreferenced and
# unchanged since the scan before (and older than 5 s): two scans, while
# the module's symbols still name its functions; "clear" keeps what was
# listed from being listed again.
SCAN_LEAKS = (
    f"[ -w {KMEMLEAK} ] || {{ echo {NO_KMEMLEAK}; exit 1; }}\n"
    f"echo scan > {KMEMLEAK}; echo scan > {KMEMLEAK}\n"
    f"echo {LEAKS_BEGIN}; cat {KMEMLEAK}; echo {LEAKS_END}; echo clear > {KMEMLEAK}"
)


def unload_script(
    target: str, dependents: list[str], providers: list[str], leaks: bool = False
) -> str:
    """The script that unloads the loaded modules that use `target` (users
    first), `target`, then its unused providers (the last loaded first);
    unless `target`'s init has not returned (exit INIT_HUNG). With `leaks`,
    kmemleak's list is printed first (between LEAKS_BEGIN and LEAKS_END)."""
    unused = (
        f'n=; {{ read -r n < {_sysfs(p)}/refcnt; }} 2>/dev/null; [ "$n" != 0 ] || $b rmmod {q(p)}'
        for p in reversed(providers)
    )
    return "\n".join(
        [
            BUSYBOX,
            kmsg.SKIP_OLD,
            f"[ -d {_sysfs(target)} ] || {{ echo {q(target + ' is not loaded')} >&2; exit 1; }}",
            *([SCAN_LEAKS] if leaks else []),
            STUCK_FUNCTIONS,
            f"if coming {q(target)}; then stuck {q(target)}; rc={INIT_HUNG}; else",
            " && ".join(
                [
                    *(f"{{ [ ! -d {_sysfs(d)} ] || $b rmmod {q(d)}; }}" for d in dependents),
                    f"$b rmmod {q(target)}",
                    *(f"{{ {u}; }}" for u in unused),
                ]
            ),
            "rc=$?; fi",
            kmsg.NEW_RECORDS,
            "exit $rc",
        ]
    )


def unload_error(code: int, target: str, stderr: str, log: list[kmsg.Record]) -> LoadFailed:
    """The error for an unload script's non-zero exit `code`; `log` holds
    the kernel log records of the unload."""
    details = "\n".join(r.format() for r in log)
    if code == INIT_HUNG:
        _, _, stuck = stuck_details(stderr)
        message = f"{target} cannot be unloaded: its init has not returned"
        return InitHung(message, f"{details}\n{stuck}".strip())
    return LoadFailed(
        f"rmmod {target} failed: {insmod_reason(stderr, [r.text for r in log])}", details
    )
