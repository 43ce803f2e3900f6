"""npm package names and versions: npm's rules for a new package, and a default name.

The rules are those of `validate-npm-package-name` for new packages: at most 214
characters, lowercase, URL-safe (`encodeURIComponent` leaves it as is), an optional
`@scope/` prefix, no leading `.` or `_`, no surrounding spaces, none of `~'!()*`, and not
a node core module or a reserved name.
"""

from __future__ import annotations

import re
import urllib.parse

MAX_LENGTH = 214
RESERVED = frozenset({"node_modules", "favicon.ico"})
SPECIAL = set("~'!()*")
SCOPED_RE = re.compile(r"^@([^/]+)/([^/]+)$")
# Semantic Versioning 2.0.0, as npm's `semver.valid` accepts it (no leading `v`).
SEMVER_RE = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*)(?:\.(?:0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*))*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$"
)


def _url_safe(part: str) -> bool:
    # encodeURIComponent leaves A-Z a-z 0-9 - _ . ! ~ * ' ( ) unescaped.
    return urllib.parse.quote(part, safe="-_.!~*'()") == part


def npm_name_problem(name: str, builtins: frozenset[str] = frozenset()) -> str | None:
    """Why `name` cannot be a new npm package's name, or None when it can."""
    if not name:
        return "the name is empty"
    if len(name) > MAX_LENGTH:
        return f"the name is {len(name)} characters long, npm allows at most {MAX_LENGTH}"
    if name != name.strip():
        return "the name has leading or trailing spaces"
    if name.startswith("."):
        return "the name starts with a period"
    if name.startswith("_"):
        return "the name starts with an underscore"
    if name.lower() != name:
        return "the name has capital letters"
    if name in RESERVED:
        return f"{name!r} is a reserved name"
    if name in builtins:
        return f"{name!r} is the name of a node core module"
    if SPECIAL & set(name.split("/")[-1]):
        return "the name has one of the characters ~'!()*"
    if name.startswith("@"):
        m = SCOPED_RE.match(name)
        if m is None:
            return "a scoped name is @scope/name, with one slash"
        scope, pkg = m.groups()
        if pkg.startswith((".", "_")):
            return "the name after the scope starts with a period or an underscore"
        if not (_url_safe(scope) and _url_safe(pkg)):
            return "the name has characters that are not URL-safe"
        return None
    if not _url_safe(name):
        return "the name has characters that are not URL-safe"
    return None


def sanitize(stem: str) -> str:
    """A valid unscoped npm name made from a file name's stem ('My Notes' -> 'my-notes')."""
    name = re.sub(r"[^a-z0-9._-]+", "-", stem.lower())
    name = re.sub(r"-{2,}", "-", name).strip("-")
    name = name.lstrip("._-")
    return name[:MAX_LENGTH].rstrip("-")


def version_problem(version: str) -> str | None:
    if SEMVER_RE.match(version) is None:
        return f"{version!r} is not a semantic version (like 1.0.0 or 0.2.0-beta.1)"
    return None
