"""Why insmod or rmmod failed, in words a module author can act on.

insmod prints the kernel's errno through strerror(), which does not know the
kernel's internal codes 512-531 (include/linux/errno.h): a module whose init
returns -EPROBE_DEFER fails with "Unknown error 517". These are named and
explained here. "Unknown symbol in module" is completed with the symbols the
kernel named in its log for that load.
"""

from __future__ import annotations

import re

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


def insmod_reason(stderr: str, log: list[str]) -> str:
    """The kernel's reason from insmod/rmmod's message (e.g. 'Invalid
    parameters'), with kernel-internal errnos named and missing symbols
    listed from `log`, the kernel log lines of that command."""
    text = stderr.strip()
    last = text.splitlines()[-1] if text else "no message"
    reason = last.rsplit(": ", 1)[-1] if "ERROR" in last else last
    if reason == UNKNOWN_SYMBOL:
        missing = unknown_symbols(log)
        if missing:
            return f"{reason}: {', '.join(missing)} (exported by no loaded module)"
    return name_errno(reason)
