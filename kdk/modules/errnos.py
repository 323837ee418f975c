"""Why insmod or rmmod failed, in words a module author can act on.

insmod (kmod's) prints the kernel's errno through strerror(), except a few it
words its own way ("Invalid parameters" for any EINVAL, also one that a
module's init returned with no parameter given). Its words are turned back
into the errno: "init returned -EINVAL (22)", unless the kernel
log of that load names what the kernel itself refused before init ran (a
parameter, a symbol) — then that line is the reason. strerror() does not know
the kernel's internal codes 512-531 (include/linux/errno.h): a module whose
init returns -EPROBE_DEFER fails with "Unknown error 517". These are named
and explained here. "Unknown symbol in module" is completed with the symbols
the kernel named in its log for that load.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Sequence

# The kernel-internal errnos: (name, what it means for a module's init or exit).
KERNEL_ERRNOS: dict[int, tuple[str, str]] = {
    512: ("ERESTARTSYS", "a wait was interrupted by a signal; the call should be restarted"),
    513: ("ERESTARTNOINTR", "interrupted by a signal; always restarted"),
    514: ("ERESTARTNOHAND", "interrupted by a signal with no handler; restarted"),
    515: ("ENOIOCTLCMD", "no such ioctl command (a driver should return -ENOTTY to users)"),
    516: ("ERESTART_RESTARTBLOCK", "interrupted; restarted through restart_syscall"),
    517: (
        "EPROBE_DEFER",
        "a resource the driver needs (GPIO, clock, regulator, another driver) is not "
        "there yet; the probe is retried when one appears, but a module's init that "
        "returns it simply fails",
    ),
    518: ("EOPENSTALE", "open found a stale dentry"),
    519: ("ENOPARAM", "the parameter is not supported"),
    521: ("EBADHANDLE", "illegal NFS file handle"),
    522: ("ENOTSYNC", "update synchronization mismatch (NFS)"),
    523: ("EBADCOOKIE", "the cookie is stale (NFS)"),
    524: (
        "ENOTSUPP",
        "operation not supported (kernel-internal; users should get -EOPNOTSUPP)",
    ),
    525: ("ETOOSMALL", "buffer or request too small"),
    526: ("ESERVERFAULT", "an untranslatable error occurred (NFS server)"),
    527: ("EBADTYPE", "type not supported by the server (NFS)"),
    528: ("EJUKEBOX", "the request will not complete before its timeout (NFS)"),
    529: ("EIOCBQUEUED", "the I/O was queued; its completion comes as an event"),
    530: ("ERECALLCONFLICT", "conflict with recalled state (NFS)"),
    531: ("ENOGRACE", "NFS file lock reclaim refused"),
}
UNKNOWN_ERROR = re.compile(r"Unknown error (\d+)")
# insmod's message when the kernel refused the module, kmod's or busybox's
# (which kdk runs where the guest has it); its words for the errno follow.
# Busybox's says "can't insert" also when it could not read the file: its
# words are then a plain strerror(), and for ENOENT only then (see BUSYBOX_WORDS).
NOT_INSERTED = re.compile(r"(?:could not insert module .*|can't insert '.*'): (.+)$")
# busybox's rmmod's message: its words for the errno follow.
NOT_UNLOADED = re.compile(r"can't unload module '.*': (.+)$")
# busybox's insmod words these errnos its own way: kmod's words for them.
BUSYBOX_WORDS = {
    "invalid module format": "Invalid module format",  # ENOEXEC
    "unknown symbol in module, or unknown parameter": "Unknown symbol in module",  # ENOENT
    "module has wrong symbol version": "Unknown symbol in module",  # ESRCH
}
UNREADABLE = os.strerror(errno.ENOENT)  # busybox's insmod found no file
IN_USE = os.strerror(errno.EAGAIN)  # busybox's rmmod, of a module in use (EWOULDBLOCK)
# kmod's insmod words these errnos its own way (ESRCH too: "Unknown symbol in module").
KMOD_WORDS = {
    "Invalid module format": errno.ENOEXEC,
    "Unknown symbol in module": errno.ENOENT,
    "Invalid parameters": errno.EINVAL,
}
# strerror()'s words (the guest runs the host's C library) back to the errno.
STRERROR = {os.strerror(n): n for n in errno.errorcode} | KMOD_WORDS
# The kernel's names where Python's errno module gives an alias.
LINUX_NAMES = {errno.EOPNOTSUPP: "EOPNOTSUPP", errno.EDEADLK: "EDEADLK"}
# A module's BTF names the types of the kernel build it was linked against:
# one built against another build of a kernel of the same release is refused.
BTF_REFUSED = "failed to validate module ["
# The kernel's log lines when it refuses a module before its init runs
# (kernel/params.c, kernel/module/): the errno is then the kernel's, not init's.
REFUSED = re.compile(
    r"(invalid for parameter|too large for parameter|Unknown parameter `|can only take \d+ "
    r"arguments|string parameter too long|string doesn't fit in|disagrees about version "
    r"of symbol|no symbol version for|version magic '|Unknown symbol \S+ \(err|"
    rf"{re.escape(BTF_REFUSED)}\S+\] BTF)"
)
UNKNOWN_SYMBOL = "Unknown symbol in module"
# The kernel's log line for each symbol it could not resolve at insmod.
SYMBOL_LINE = re.compile(r"^(\S+): Unknown symbol (\S+) \(err (-?\d+)\)")


def name_errno(text: str) -> str:
    """`text` with "Unknown error N" of a kernel-internal errno replaced by
    "NAME (N): explanation"."""

    def named(m: re.Match[str]) -> str:
        code = int(m.group(1))
        if code not in KERNEL_ERRNOS:
            return m.group(0)
        name, meaning = KERNEL_ERRNOS[code]
        return f"{name} ({code}): {meaning}"

    return UNKNOWN_ERROR.sub(named, text)


def unknown_symbols(log: list[str]) -> list[str]:
    """The symbols the kernel log lines of a failed insmod say were missing."""
    return list(dict.fromkeys(m.group(2) for ln in log if (m := SYMBOL_LINE.match(ln))))


def errno_text(code: int) -> str:
    """An errno as a module's code would write it: "-EINVAL (22)", and a
    kernel-internal one explained ("-EPROBE_DEFER (517): a resource ...")."""
    if code in KERNEL_ERRNOS:
        internal, meaning = KERNEL_ERRNOS[code]
        return f"-{internal} ({code}): {meaning}"
    name = LINUX_NAMES.get(code) or errno.errorcode.get(code)
    return f"-{name} ({code})" if name else f"-{code}"


def _errno(words: str) -> int | None:
    """The errno of insmod's words for it ("Invalid parameters", "Unknown error 517")."""
    m = UNKNOWN_ERROR.fullmatch(words)
    return int(m.group(1)) if m else STRERROR.get(words)


def insmod_reason(stderr: str, log: list[str], params: Sequence[str] = ()) -> str:
    """The kernel's reason from insmod/rmmod's message `stderr`, with `log`,
    the kernel log lines of that command, and `params`, insmod's arguments
    after the file: what the kernel refused before init ran (a parameter,
    missing symbols), else the errno init returned, with the parameters
    given, if any ("init returned -EINVAL (22)")."""
    text = stderr.strip()
    last = text.splitlines()[-1] if text else "no message"
    inserted = NOT_INSERTED.search(last)
    if inserted and inserted.group(1) == UNREADABLE and "ERROR" not in last:
        inserted = None  # busybox's insmod could not open the file
    unloaded = NOT_UNLOADED.search(last)
    if unloaded and unloaded.group(1) == IN_USE:
        return f"the module is in use (delete_module: {errno_text(errno.EAGAIN)})"
    said = inserted or unloaded
    if said:
        reason = BUSYBOX_WORDS.get(said.group(1), said.group(1))
    else:
        reason = last.rsplit(": ", 1)[-1] if "ERROR" in last else last
    missing = unknown_symbols(log)
    if reason == UNKNOWN_SYMBOL and missing:
        return f"{reason}: {', '.join(missing)} (exported by no loaded module)"
    code = _errno(reason) if inserted else None
    if code is None:
        return name_errno(reason)
    refused = next((ln for ln in log if REFUSED.search(ln)), None)
    if refused is not None:
        why = " (built against another build of this kernel: build it again)"
        return f"{errno_text(code)}: {refused}" + (why if BTF_REFUSED in refused else "")
    if code == errno.ENOEXEC:  # the kernel's checks of the file, not init
        return f"{reason} ({errno_text(code)})"
    given = f" (parameters: {' '.join(params)})" if params else ""
    head, sep, meaning = errno_text(code).partition(": ")
    return f"init returned {head}{given}{sep}{meaning}"
