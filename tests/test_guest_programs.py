"""Every program the tests, labs and READMEs start in the guest is
installed by scripts/install-deps: the guest runs the host's programs.

The programs are read from the code: the commands given to the guest
(`vm.exec`, `sh(vm, ...)`, `kdk exec --`, a namespace's `run`, `check` and
`spawn`, a guest's `start`, `ip netns exec`, the shell scripts among
them, and the `kdk exec --` lines of the READMEs). Each must be in
kdk.guest.programs.PACKAGES, and each there must be owned on this host by
the package named, which install-deps installs (or Debian always has).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdk.guest.programs import PACKAGES, not_installed

from .conftest import PROJECT

SOURCES = ["tests", "kmods", "drivers", "rawnet", "kdk", "experiments", "scripts"]
HOLE = "\x00"  # a value only known at run time (an f-string's {...})
SHELL_WORDS = "if then else elif fi do done while until in esac { } ! exec command"
KEYWORDS = set(SHELL_WORDS.split())
# Shell builtins: no program of their own in the guest's shell (dash).
SHELL_BUILTINS = "[ test echo printf read cd exit true false kill set export wait trap eval shift"
BUILTINS = {*SHELL_BUILTINS.split(), ":", ".", "return", "local", "break", "continue", "umask"}
OPERATORS = (";;", "&&", "||", ";", "&", "|", "(", ")", "\n")
GUEST_METHODS = {"exec", "check", "run", "spawn", "start"}
HOST_MODULES = {"subprocess", "asyncio"}  # their .run() starts a host program
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# missing on purpose: tests/test_vm.py, tests/test_net_topology.py
NOT_PROGRAMS = {"no-such-command", "kdk-no-such-program"}


# -- shell scripts -------------------------------------------------------------
def _closing(s: str, i: int, open_: str, close: str) -> int:
    """The index of the `close` matching an `open_` that ended just before s[i]."""
    depth = 1
    while i < len(s):
        if s[i] == "'":
            i = s.index("'", i + 1)
        elif s.startswith(open_, i):
            depth += 1
        elif s.startswith(close, i):
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"no {close!r} in {s!r}")


def tokens(s: str, inner: list[str]) -> list[str]:
    """The words and operators of a shell script (a redirection is "<>");
    the scripts of its command substitutions are added to `inner`."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False

    def flush() -> None:
        if cur:
            out.append("".join(cur))
            cur.clear()

    i = 0
    while i < len(s):
        c = s[i]
        op = next((o for o in OPERATORS if s.startswith(o, i)), None)
        if s.startswith("$((", i):
            i = _closing(s, i + 3, "((", "))") + 2
            cur.append("0")
        elif s.startswith("$(", i) or c == "`":
            end = s.index("`", i + 1) if c == "`" else _closing(s, i + 2, "(", ")")
            inner.append(s[i + (1 if c == "`" else 2) : end])
            cur.append(HOLE)
            i = end + 1
        elif c == "\\":
            cur.append(s[i + 1 : i + 2])
            i += 2
        elif c == '"' or quoted:
            quoted = quoted != (c == '"')
            cur.append("" if c == '"' else c)
            i += 1
        elif c == "'":
            end = s.index("'", i + 1)
            cur.append(s[i + 1 : end])
            i = end + 1
        elif c in " \t":
            flush()
            i += 1
        elif c in "<>":
            if "".join(cur).isdigit():  # 2>: a file descriptor, not a word
                cur.clear()
            flush()
            i += 1
            while i < len(s) and s[i] in "<>&|":
                i += 1
            out.append("<>")
        elif c == "#" and not cur:
            i = s.find("\n", i) % (len(s) + 1)
        elif op is not None:
            flush()
            out.append(op)
            i += len(op)
        else:
            cur.append(c)
            i += 1
    flush()
    return out


def script_programs(script: str) -> list[str]:
    """The programs a shell script starts: its words in command position."""
    inner: list[str] = []
    toks = tokens(script, inner)
    found: list[str] = []
    expect, skip, i = True, False, 0
    while i < len(toks):
        t = toks[i]
        if t in OPERATORS:
            expect, skip = True, False
        elif t == "<>":
            i += 1  # its file
        elif skip or not expect:
            pass
        elif t in ("for", "case"):
            skip = True  # names and words up to the next operator
        elif t in KEYWORDS or re.match(r"[A-Za-z_]\w*=", t):
            pass
        else:
            found.append(t)
            expect = toks[i : i + 3] == ["ip", "netns", "exec"]
            i += 3 if expect else 0  # ip netns exec NS PROGRAM
        i += 1
    return found + [p for s in inner for p in script_programs(s)]


def argv_programs(argv: list[str | None]) -> list[str]:
    """The programs an argv starts (None: a part known at run time)."""
    if not argv or argv[0] is None:
        return []
    if argv[0] in ("sh", "bash") and argv[1:2] == ["-c"] and len(argv) > 2 and argv[2]:
        return [argv[0], *script_programs(argv[2])]
    if argv[:3] == ["ip", "netns", "exec"]:
        return ["ip", *argv_programs(argv[4:])]
    return [argv[0]]


# -- Python sources ------------------------------------------------------------
class Calls(ast.NodeVisitor):
    """The guest commands of one Python file, with their line numbers."""

    def __init__(self, tree: ast.Module) -> None:
        self.names: dict[str, ast.expr] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if isinstance(target, ast.Name):
                    self.names[target.id] = node.value
        self.found: list[tuple[str, int]] = []
        self.visit(tree)

    def text(self, node: ast.expr, depth: int = 0) -> str | None:
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, ast.JoinedStr):
            return "".join(
                str(v.value) if isinstance(v, ast.Constant) else HOLE for v in node.values
            )
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            parts = [self.text(node.left, depth), self.text(node.right, depth)]
            return None if None in parts else "".join(p or "" for p in parts)
        if isinstance(node, ast.Name) and node.id in self.names and depth < 5:
            return self.text(self.names[node.id], depth + 1)
        return None

    def argv(self, node: ast.expr) -> list[str | None] | None:
        if isinstance(node, ast.Name) and node.id in self.names:
            node = self.names[node.id]
        if isinstance(node, ast.List | ast.Tuple):
            return [None if isinstance(e, ast.Starred) else self.text(e) for e in node.elts]
        return None

    def command(self, node: ast.expr) -> list[str]:
        """The programs of a guest command: an argv, or a shell script."""
        argv = self.argv(node)
        if argv is not None:
            return argv_programs(argv)
        script = self.text(node)
        return script_programs(script) if script is not None else []

    def after_dashes(self, parts: list[str | None]) -> list[str]:
        """`kdk exec -- ARGV` or `kdk trace NAME ... -- ARGV` among an argv."""
        if "--" in parts and ("exec" in parts or "trace" in parts):
            return argv_programs(parts[parts.index("--") + 1 :])
        return []

    def visit_List(self, node: ast.List) -> None:
        self.add(self.after_dashes([self.text(e) for e in node.elts]), node)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        f, args = node.func, node.args
        found = self.after_dashes([self.text(a) for a in args])
        if isinstance(f, ast.Name) and f.id == "sh" and len(args) > 1:
            found += self.command(args[1])
        on_host = (
            isinstance(f, ast.Attribute)
            and isinstance(f.value, ast.Name)
            and (f.value.id in HOST_MODULES)
        )
        if isinstance(f, ast.Attribute) and f.attr in GUEST_METHODS and args and not on_host:
            found += self.command(args[0])
        self.add(found, node)
        self.generic_visit(node)

    def add(self, programs: list[str], node: ast.AST) -> None:
        self.found += [(p, node.lineno) for p in programs]  # type: ignore[attr-defined]


def readme_programs(text: str) -> Iterator[tuple[str, int]]:
    """The programs of the `kdk exec -- ...` and `kdk trace NAME -- ...` lines."""
    for n, line in enumerate(text.splitlines(), 1):
        m = re.search(r"(`?)kdk (?:exec|trace \S+(?: -\S+)*) -- (.*)", line)
        if m:  # in `code` up to its end, else up to a comment
            command = m[2].split("`")[0] if m[1] else re.sub(r"\s+&?\s*(#.*)?$", "", m[2])
            yield from ((p, n) for p in script_programs(command))


def program_name(word: str) -> str | None:
    """A program's name as PACKAGES has it; None for one known only at run
    time, or the project's own (a lab's ./ping, a path in a folder)."""
    if HOLE in word or word.startswith("$") or not word:
        return None
    if "/" in word:
        system = re.fullmatch(r"/(usr/)?s?bin/([^/]+)", word)
        return system.group(2) if system else None
    return word


def guest_programs() -> dict[str, list[str]]:
    """Each program started in the guest, and where."""
    where: dict[str, list[str]] = {}
    found: list[tuple[str, str]] = []
    for top in SOURCES:
        for path in sorted((PROJECT / top).rglob("*.py")):
            rel = path.relative_to(PROJECT)
            if rel.parts[:2] == ("kdk", "inguest") or path == Path(__file__):
                continue  # programs run in the guest, not commands given to it
            calls = Calls(ast.parse(path.read_text(), str(path)))
            found += [(p, f"{rel}:{n}") for p, n in calls.found]
    for readme in [PROJECT / "README.md", *sorted(PROJECT.glob("*/*/README.md"))]:
        rel = readme.relative_to(PROJECT)
        found += [(p, f"{rel}:{n}") for p, n in readme_programs(readme.read_text())]
    for word, at in found:
        name = program_name(word)
        if name is not None and name not in BUILTINS | NOT_PROGRAMS:
            where.setdefault(name, []).append(at)
    return where


# -- the checks ------------------------------------------------------------------
def test_the_parser_finds_commands_in_scripts() -> None:
    script = (
        'read a < /x; rmmod m; rc=$?; for f in *; do cat "$f"; done; i=$((i+1)); '
        '[ "$(ps -o stat= -C k)" = S ] 2>/dev/null || exit 1; { dd if=/y || :; } | '
        "awk -F'[,;]' '{print}' && ip netns exec ns ping -c1 x; X=1 exec sleep 9"
    )
    assert sorted(script_programs(script)) == sorted(
        ["read", "rmmod", "cat", "[", "exit", "dd", ":", "awk", "ip", "ping", "sleep", "ps"]
    )


def test_every_program_started_in_the_guest_has_its_package_listed() -> None:
    found = guest_programs()
    # what the parser must see (a parser that finds nothing would pass the rest)
    assert {"iptables", "ethtool", "genl", "busybox", "python3", "ps", "modinfo"} <= set(found)
    unlisted = {p: at[:3] for p, at in found.items() if p not in PACKAGES}
    assert not unlisted, (
        "programs started in the guest that kdk/guest/programs.py PACKAGES does not list "
        f"(add each with its Debian package, and the package to scripts/install-deps): {unlisted}"
    )


def install_deps_packages() -> set[str]:
    out = subprocess.run(
        [str(PROJECT / "scripts" / "install-deps"), "--list"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(out.stdout.split())


def owners(programs: list[str]) -> dict[str, str]:
    """The Debian package of each program's file on this host, where the
    guest finds it (dpkg knows a file by the path its package ships: on a
    merged /usr, /bin/ip for /usr/bin/ip; an alternative by its target)."""
    tries: dict[str, list[str]] = {}
    for program in programs:
        path = shutil.which(program, path=GUEST_PATH)
        assert path, f"{program} is not installed on this host: run scripts/install-deps"
        paths = [path, os.path.realpath(path)]
        tries[program] = paths + [re.sub(r"^/usr/(s?bin)/", r"/\1/", p) for p in paths]
    every = sorted({p for paths in tries.values() for p in paths})
    out = subprocess.run(["dpkg-query", "-S", *every], capture_output=True, text=True).stdout
    owner = {}
    for line in out.splitlines():
        if not line.startswith("diversion by "):
            package, _, path = line.partition(": ")
            owner[path] = package.split(":")[0]
    got = {prog: next((owner[p] for p in paths if p in owner), "") for prog, paths in tries.items()}
    assert all(got.values()), (
        f"files no package owns: {[tries[p] for p, o in got.items() if not o]}"
    )
    return got


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian host")
def test_each_listed_program_comes_with_the_package_named_which_install_deps_installs() -> None:
    assert owners(sorted(PACKAGES)) == PACKAGES
    packages = sorted(set(PACKAGES.values()) - install_deps_packages())
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Essential} ${Priority}\\n", *packages],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    always = {f[0] for f in map(str.split, out.splitlines()) if "yes" in f or "required" in f}
    assert set(packages) == always, (
        "packages scripts/install-deps does not install, and Debian does not always have "
        f"(neither Essential nor of priority required): {sorted(set(packages) - always)}"
    )


@pytest.mark.parametrize(
    ("program", "said"),
    [
        (
            "iptables",
            "iptables is not installed on the host (the guest runs the host's programs): "
            "apt-get install iptables",
        ),
        (
            "/usr/bin/nc",
            "nc is not installed on the host (the guest runs the host's programs): "
            "apt-get install netcat-openbsd",
        ),
        (
            "kdk-nothing",
            "kdk-nothing is not installed on the host (the guest runs the host's programs)",
        ),
        ("./ping", "./ping does not exist in the guest (the guest sees the host's files)"),
    ],
)
def test_a_missing_program_is_one_line_naming_its_package(program: str, said: str) -> None:
    assert not_installed(program) == said
