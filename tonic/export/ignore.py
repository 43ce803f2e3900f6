"""Which files a project's `.gitignore` and `.npmignore` files exclude, with git's rules.

The semantics are git's (gitignore(5)), without calling git, so they hold outside a git
work tree too:
- blank lines and `#` comments are skipped; `\\#` and `\\!` start a pattern literally;
  trailing spaces are dropped unless escaped;
- `!` re-includes what an earlier pattern excluded, but never a file whose directory
  is excluded;
- a trailing `/` matches directories only;
- a pattern with a `/` at its start or in its middle is anchored to the directory of its
  ignore file; otherwise it matches a name at any depth below it;
- `*` and `?` do not match `/`, `[...]` is a character class (`[!...]` negated), `**/`
  matches any leading directories, `/**` everything inside, `/**/` zero or more
  directories;
- deeper ignore files override shallower ones; `.git/info/exclude` comes first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tonic.export.links import lexical

IGNORE_FILES = (".gitignore", ".npmignore")


@dataclass(frozen=True)
class Rule:
    source: Path  # the ignore file
    line: int
    pattern: str  # as written
    base: Path  # the directory the pattern is relative to
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool

    def describe(self) -> str:
        return f"{self.source.name} line {self.line}: {self.pattern}"


def _class(pattern: str, i: int) -> tuple[str, int] | None:
    """The regex of a `[...]` class starting at pattern[i], and the index after it."""
    j = i + 1
    negate = j < len(pattern) and pattern[j] in "!^"
    if negate:
        j += 1
    start = j
    while j < len(pattern) and (pattern[j] != "]" or j == start):
        if pattern[j] == "\\":
            j += 1
        j += 1
    if j >= len(pattern):
        return None  # no closing bracket: a literal `[`
    body = pattern[start:j]
    out = []
    k = 0
    while k < len(body):
        ch = body[k]
        if ch == "\\" and k + 1 < len(body):
            k += 1
            out.append(re.escape(body[k]))
        elif ch == "-" and 0 < k < len(body) - 1:
            out.append("-")
        else:
            out.append(re.escape(ch))
        k += 1
    return ("[^/" if negate else "(?!/)[") + "".join(out) + "]", j + 1


def translate(pattern: str) -> str:
    """The regex (for re.fullmatch on a relative POSIX path) of an anchored pattern body."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith("**", i):
            at_start = i == 0 or pattern[i - 1] == "/"
            j = i
            while j < n and pattern[j] == "*":
                j += 1
            at_end = j == n or pattern[j] == "/"
            if at_start and at_end:
                if j == n:
                    out.append(".*")  # `/**` at the end: everything inside
                    i = j
                else:
                    out.append("(?:.*/)?")  # `**/`: zero or more directories
                    i = j + 1
                continue
            out.append("[^/]*")  # other runs of asterisks are one `*`
            i = j
            continue
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            klass = _class(pattern, i)
            if klass is not None:
                out.append(klass[0])
                i = klass[1]
                continue
            out.append(re.escape(ch))
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def parse_line(line: str) -> tuple[str, bool, bool] | None:
    """(anchored pattern body, negate, dir_only) of one ignore-file line, or None."""
    line = line.rstrip("\n").rstrip("\r")
    # Trailing spaces go, unless escaped with a backslash.
    while line.endswith(" ") and not line.endswith("\\ "):
        line = line[:-1]
    if not line or line.startswith("#"):
        return None
    negate = line.startswith("!")
    if negate or line.startswith(("\\!", "\\#")):
        line = line[1:]
    dir_only = line.endswith("/") and not line.endswith("\\/")
    if dir_only:
        line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    body = line.lstrip("/") if anchored else "**/" + line
    return body, negate, dir_only


def load_rules(path: Path, base: Path) -> list[Rule]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    rules = []
    for number, raw in enumerate(text.splitlines(), start=1):
        parsed = parse_line(raw)
        if parsed is None:
            continue
        body, negate, dir_only = parsed
        rules.append(
            Rule(
                source=path,
                line=number,
                pattern=raw.strip(),
                base=base,
                regex=re.compile(translate(body), re.DOTALL),
                negate=negate,
                dir_only=dir_only,
            )
        )
    return rules


class IgnoreRules:
    """The ignore files of a tree rooted at `root` (a git work tree or a project)."""

    def __init__(self, root: Path, names: tuple[str, ...] = IGNORE_FILES) -> None:
        self.root = root.resolve()
        self.names = names
        self._cache: dict[Path, list[Rule]] = {}

    def _rules_in(self, directory: Path) -> list[Rule]:
        if directory not in self._cache:
            rules: list[Rule] = []
            if directory == self.root:
                exclude = directory / ".git" / "info" / "exclude"
                if exclude.is_file():
                    rules += load_rules(exclude, directory)
            for name in self.names:
                candidate = directory / name
                if candidate.is_file():
                    rules += load_rules(candidate, directory)
            self._cache[directory] = rules
        return self._cache[directory]

    def _verdict(self, path: Path, is_dir: bool) -> Rule | None:
        """The last rule matching `path` itself (ancestors not considered)."""
        last: Rule | None = None
        directory = self.root
        chain = [directory]
        for part in path.relative_to(self.root).parts[:-1]:
            directory = directory / part
            chain.append(directory)
        for directory in chain:
            for rule in self._rules_in(directory):
                if rule.dir_only and not is_dir:
                    continue
                if rule.regex.fullmatch(path.relative_to(rule.base).as_posix()):
                    last = rule
        return last

    def excluded(self, path: Path) -> Rule | None:
        """The rule that excludes `path` or one of its directories, or None; a symlink
        is judged where it stands, like git does, not where it points."""
        path = lexical(path)
        try:
            parts = path.relative_to(self.root).parts
        except ValueError:
            return None
        current = self.root
        for i, part in enumerate(parts):
            current = current / part
            is_dir = i < len(parts) - 1 or current.is_dir()
            rule = self._verdict(current, is_dir)
            if rule is not None and not rule.negate:
                return rule
        return None
