"""Symlinks among the files an export takes: which it follows, which it leaves out.

A package holds no symlink: `npm pack` silently leaves every link out of the tarball,
so a link in the package folder would be there and not in what npm installs. A link
the notebooks require is exported as a copy of its target at the link's own path, where
node looks for it in the installed package.

A link is followed only to a target inside the project (`project_root`) and outside
any hidden folder or file there (`.ssh`, `.docker`, `.config`: where credentials live);
one that points elsewhere (itself, or a linked folder on its way) is left out with a
warning, so a file from elsewhere never lands in a package. A notebook named on the
command line is what node runs, its target: the user asked for that file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from tonic.errors import ExportError


@dataclass(frozen=True)
class Skipped:
    """A required file reached through a symlink that points out of the project."""

    path: Path  # where it was required, through the link
    target: Path  # the file it really is
    where: str  # file:line of the require
    why: str  # "outside the project", "in a hidden folder of the project"

    def warning(self, shown: str, target: str) -> str:
        return (
            f"{shown} is a symlink to {target}, {self.why}: left out of the package "
            f"(required at {self.where}, which will not find it once installed)"
        )


def project_root(main: Path, project: Path | None) -> Path:
    """The folder a followed symlink must stay in: the project's (its package.json's),
    else the git work tree's, else the first notebook's; never the home folder or one
    above it (a stray ~/package.json or a dotfiles repository makes no project)."""
    try:
        home: Path | None = Path.home().resolve()
    except RuntimeError:  # no home folder known: nothing to keep out
        home = None
    git = [d for d in main.parents if (d / ".git").exists()][:1]
    for candidate in [*([project] if project else []), *git]:
        if home is None or (candidate != home and candidate not in home.parents):
            return candidate
    return main.parent


def lexical(path: Path) -> Path:
    """`path` absolute, with `.` and `..` removed as text (as node's path.resolve does),
    and symlinks not followed."""
    return Path(os.path.normpath(os.path.abspath(path)))


def through_link(path: Path) -> bool:
    return lexical(path) != path.resolve()


def unfollowed(target: Path, root: Path) -> str | None:
    """Why a link's (resolved) target is not followed, or None: outside `root`, or
    hidden there (a name starting with `.` on its way)."""
    if target != root and root not in target.parents:
        return "outside the project"
    if any(part.startswith(".") for part in target.relative_to(root).parts):
        return "hidden in the project"
    return None


def dangling(path: Path) -> bool:
    return path.is_symlink() and not path.exists()


def _lexical_type(path: Path) -> object:
    """The "type" of the package.json that governs `path` where it stands, links on its
    way not followed: what node sees for the copy in the package."""
    for directory in path.parents:
        manifest = directory / "package.json"
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            return data.get("type") if isinstance(data, dict) else None
    return None


def check_copy(path: Path, real: Path, shown: str, target: str) -> None:
    """A `.js` file copied from elsewhere must keep its module kind: the package.json
    governing the copy must give the same "type" as the target's."""
    if path.suffix != ".js" or path.parent == real.parent:
        return
    if _lexical_type(path) != _lexical_type(real):
        raise ExportError(
            f"{shown} is a symlink to {target}, whose package.json gives another module "
            "type; a package holds no symlinks, and a copy would load differently; "
            f"require {target} itself"
        )
