"""KTAP, the results KUnit prints (Documentation/dev-tools/ktap.rst), read
into a tree of tests.

A test's subtests come before its own result line, indented one level
(four spaces) deeper, and its diagnostic lines come right before its
result line (at whatever depth: KUnit 6.1 prints a case's expectation
failure at the case's depth, its continuation lines deeper):

        KTAP version 1
        # Subtest: kdk_kunit_fail          <- the suite's header, its plan
        1..2
        # fails: EXPECTATION FAILED at kunit_fail.c:20   <- the case's log
        not ok 1 fails
        ok 2 skips # SKIP no hardware here
    not ok 1 kdk_kunit_fail                <- the suite's own result

so a result line at depth d closes the test whose subtests were gathered
at depth d + 1, and takes the diagnostic lines read since the last result
line. A run that ended early (a crash, a truncated log) leaves tests with
a header and no result line, and plans with fewer results than they
announced: those tests are CRASH, named by their header when they had
one. The kernel's other messages among the results are diagnostic lines
too. (debugfs' kunit/<suite>/results holds the same text, but on 6.1 a
parameterized case's lines are missing from it: kdk reads the log.)
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

INDENT = 4  # spaces per level (KUNIT_SUBTEST_INDENT); a tab counts as one level
RESULT = re.compile(r"^(not ok|ok) (\d+)(?: -)?(?: ([^#]*?))?\s*(?:#\s*(.*))?$")
PLAN = re.compile(r"^1\.\.(\d+)")
HEADER = re.compile(r"^(?:KTAP|TAP) version \d+")
SUBTEST = re.compile(r"^# Subtest: (.*)$")
# The counts KUnit prints after a suite's or a parameterized case's results.
NO_RESULT = "no result: the run ended before it"
COUNTS = re.compile(r"^# (?:.*: )?(?:Totals: )?pass:\d+ fail:\d+ skip:\d+ total:\d+$")


class Status(Enum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    CRASH = "crash"  # no result line: the run ended before it had one


@dataclass(frozen=True)
class Test:
    """One test of a KTAP run: a suite, a case, or a parameter of a case."""

    name: str
    status: Status
    number: int  # its number in its parent's plan (1-based)
    reason: str = ""  # a skip's reason, or why a CRASH has no result
    log: tuple[str, ...] = ()  # its diagnostic lines, dedented together
    subtests: tuple[Test, ...] = ()

    def find(self, name: str) -> Test | None:
        """Its subtest called `name`."""
        return next((t for t in self.subtests if t.name == name), None)

    def failure(self) -> str:
        """What a failed or crashed test says: its log, its failed or crashed
        subtests' names and logs, and its reason."""
        lines = list(self.log)
        for sub in self.subtests:
            if sub.status in (Status.FAIL, Status.CRASH):
                lines.append(
                    f"{sub.status.value}: {sub.name}" + (f" ({sub.reason})" * bool(sub.reason))
                )
                lines += [f"    {line}" for line in sub.log]
        if self.reason:
            lines.append(self.reason)
        return "\n".join(lines)


@dataclass
class _Level:
    """What was read at one depth for the test a result line one level up
    will close."""

    name: str = ""  # from its `# Subtest:` header
    planned: int | None = None
    subtests: list[Test] = field(default_factory=list)

    def started(self) -> bool:
        return bool(self.name or self.planned is not None or self.subtests)

    def subtests_and_missing(self) -> tuple[Test, ...]:
        """Its subtests, and those its plan announced and it lacks, as CRASH."""
        missing = [
            Test(f"test {n}", Status.CRASH, n, NO_RESULT)
            for n in range(len(self.subtests) + 1, (self.planned or 0) + 1)
        ]
        return (*self.subtests, *missing)


def depth(line: str) -> int:
    """The level of a line: its leading whitespace, a tab or four spaces a level."""
    width = 0
    for ch in line:
        if ch == "\t":
            width += INDENT
        elif ch == " ":
            width += 1
        else:
            break
    return width // INDENT


def parse(lines: Iterable[str]) -> list[Test]:
    """The top-level tests (the suites a module load ran) of KTAP output,
    which may be mixed with other kernel log lines."""
    levels: list[_Level] = [_Level()]
    log: list[str] = []  # diagnostic lines since the last result line

    def close(d: int, status: Status, number: int, name: str, reason: str) -> None:
        inner = levels[d + 1] if len(levels) > d + 1 else _Level()
        del levels[d + 1 :]
        own = tuple(
            textwrap.dedent(
                "\n".join(ln for ln in log if not COUNTS.match(ln.strip()))
            ).splitlines()
        )
        log.clear()
        test = Test(name or inner.name, status, number, reason, own, inner.subtests_and_missing())
        levels[d].subtests.append(test)

    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        d = depth(raw)
        while len(levels) <= d:
            levels.append(_Level())
        m = RESULT.match(line)
        if m:
            word, number, name, directive = m.groups()
            status, reason = (Status.PASS if word == "ok" else Status.FAIL), ""
            if directive and directive.upper().startswith("SKIP"):
                status, reason = Status.SKIP, directive[4:].strip()
            close(d, status, int(number), (name or "").strip() or f"test {number}", reason)
        elif m := SUBTEST.match(line):
            levels[d].name = m.group(1).strip()
            log.clear()  # what came before a test's header is not its own
        elif m := PLAN.match(line):
            levels[d].planned = int(m.group(1))
        elif HEADER.match(line):
            log.clear()
        else:
            log.append(raw.rstrip())  # dedented as a whole when its test closes
    # A run that ended early: close what is open, innermost first.
    for d in range(len(levels) - 2, -1, -1):
        if levels[d + 1].started():
            number = len(levels[d].subtests) + 1
            close(d, Status.CRASH, number, levels[d + 1].name or f"test {number}", NO_RESULT)
    return levels[0].subtests


def ktap_lines(lines: Iterable[str]) -> list[str]:
    """The KTAP of a kernel log: from the first KTAP line (a version line,
    a `# Subtest:` header or a plan, at any depth) to the end."""
    out: list[str] = []
    for line in lines:
        if out or HEADER.match(line.strip()) or SUBTEST.match(line.strip()):
            out.append(line.rstrip())
    return out
