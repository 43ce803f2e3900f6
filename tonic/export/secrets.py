"""Secrets in recorded outputs: a cell that printed the value of an environment
variable or of a project's `.env` entry, which an export would write into the package.

Only values that can be secrets are looked for, so that a warning means something:
at least 8 characters, and not a number or version (`3000`, `10.0.0.1`), a path or a
list of paths (`/opt/bin:/usr/bin`), a URL without credentials or query, or a common
setting (`production`, `localhost`); nor the variables every shell or tool sets, whose
values a notebook prints innocently (PATH, HOME, PWD, USER, HOSTNAME, LANG, TERM, ...,
`LC_*`, `XDG_*`, `TONIC_*`). The `.env` files are the project's and each notebook
folder's `.env`, `.env.*` (not `.env.example`, `.env.sample`, `.env.template`) and
direnv's `.envrc`.
A warning names the variable, never its value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tonic.export.render import NotebookRun, recorded_texts

MIN_LENGTH = 8
# fmt: off
SHELL_NAMES = frozenset({
    "PATH", "HOME", "PWD", "OLDPWD", "SHELL", "USER", "USERNAME", "LOGNAME", "TERM",
    "LANG", "LANGUAGE", "HOSTNAME", "HOSTTYPE", "OSTYPE", "MACHTYPE", "SHLVL", "TZ",
    "EDITOR", "VISUAL", "PAGER", "DISPLAY", "COLORTERM", "TERM_PROGRAM",
    "TERM_PROGRAM_VERSION", "LS_COLORS", "LSCOLORS", "LESSOPEN", "LESSCLOSE", "MAIL",
    "TMPDIR", "NODE_ENV", "SSH_CLIENT", "SSH_CONNECTION", "SSH_TTY", "SSH_AUTH_SOCK",
    "MANPATH", "INFOPATH", "_",
})
# fmt: on
SHELL_PREFIXES = ("LC_", "XDG_", "TONIC_", "npm_package_", "npm_lifecycle_")
COMMON_VALUES = frozenset(
    ["development", "production", "staging", "localhost", "undefined", "disabled", "enabled"]
)
NUMBER_RE = re.compile(r"[+-]?\d+(?:[.,:_-]\d+)*")
URL_RE = re.compile(r"[a-z][a-z0-9+.-]*://[^/@?#\s]+(?:/[^?#@\s]*)?", re.IGNORECASE)
DOTENV_LINE_RE = re.compile(r"\s*(?:export\s+)?([A-Za-z_][\w.-]*)\s*=\s*(.*)")
TEMPLATES = (".example", ".sample", ".template", ".dist")


@dataclass(frozen=True)
class Secret:
    name: str
    value: str
    source: str  # "the environment", or the .env file as shown

    def forms(self) -> set[str]:
        """The value as printed, and as node's inspect writes it inside quotes."""
        text = self.value.strip()
        escaped = text.replace("\\", "\\\\").replace("\n", "\\n")
        return {text, escaped, escaped.replace("'", "\\'")}

    def named(self) -> str:
        return (
            f"${self.name}"
            if self.source == "the environment"
            else (f"{self.name} (from {self.source})")
        )


def _is_path(value: str) -> bool:
    parts = [p for p in value.split(os.pathsep) if p]
    return bool(parts) and all(p.startswith(("/", "~", "./", "../")) for p in parts)


def can_be_secret(name: str, value: str) -> bool:
    """Whether `name=value` could be a secret, by the rules above."""
    text = value.strip()
    if len(text) < MIN_LENGTH or name in SHELL_NAMES or name.startswith(SHELL_PREFIXES):
        return False
    if text.lower() in COMMON_VALUES or NUMBER_RE.fullmatch(text) or _is_path(text):
        return False
    return URL_RE.fullmatch(text) is None


def _dotenv_value(raw: str) -> str:
    raw = raw.strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"`":
        inner = raw[1:-1]
        return inner.replace("\\n", "\n") if raw[0] == '"' else inner
    return re.split(r"\s+#", raw, maxsplit=1)[0].strip()


def dotenv_entries(path: Path) -> dict[str, str]:
    """The `NAME=value` entries of a .env file (dotenv's syntax, one line each)."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    entries: dict[str, str] = {}
    for line in text.splitlines():
        m = DOTENV_LINE_RE.fullmatch(line)
        if m is not None and not line.lstrip().startswith("#"):
            entries[m.group(1)] = _dotenv_value(m.group(2))
    return entries


def dotenv_files(folders: list[Path]) -> list[Path]:
    found: list[Path] = []
    for folder in dict.fromkeys(folders):
        for path in sorted(folder.glob(".env*")):
            name = path.name
            if name not in (".env", ".envrc") and not name.startswith(".env."):
                continue
            if name.endswith(TEMPLATES) or not path.is_file() or path in found:
                continue
            found.append(path)
    return found


def secrets(env: Mapping[str, str], dotenvs: list[tuple[Path, str]]) -> list[Secret]:
    """The values worth looking for: the .env files' entries first (the more telling
    source when a variable is in both), then the environment's."""
    found = [
        Secret(name, value, shown)
        for path, shown in dotenvs
        for name, value in dotenv_entries(path).items()
        if can_be_secret(name, value)
    ]
    found += [
        Secret(name, value, "the environment")
        for name, value in sorted(env.items())
        if can_be_secret(name, value)
    ]
    return found


def leaks(
    runs: list[NotebookRun],
    found: list[Secret],
    *,
    with_tests: bool,
    shown_in: str | None = None,
) -> list[str]:
    """One warning per notebook, place and variable whose value its recorded outputs hold
    (`shown_in`: where the export shows them; default the package's README and test)."""
    warnings: list[str] = []
    for run in runs:
        reported: set[tuple[str, str]] = set()
        for where, text, in_test in recorded_texts(run):
            for secret in found:
                if (where, secret.name) in reported or not any(
                    form in text for form in secret.forms()
                ):
                    continue
                reported.add((where, secret.name))
                into = "README.md and test file" if with_tests and in_test else "README.md"
                place = shown_in or f"the package's {into}"
                warnings.append(
                    f"{run.rel}: {where} printed the value of {secret.named()}: {place} "
                    "show it; export with --no-outputs to leave the recorded outputs out"
                )
    return warnings
