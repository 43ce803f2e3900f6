"""From a path to a parsed Notebook, and node's own verdict on its syntax."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

from tonic.errors import NotebookSyntaxError
from tonic.notebook.cells import Notebook, parse
from tonic.notebook.modkind import package_type
from tonic.notebook.source import Source, read_source
from tonic.settings import node_binary


def load(path: str | Path) -> tuple[Source, Notebook]:
    source = read_source(path)
    ptype, _ = package_type(source.path)
    nb = parse(source.data, filename=source.path.name, package_type=ptype)
    return source, nb


def node_check(source: Source) -> None:
    """Raise NotebookSyntaxError with node's message when `node --check` rejects the file."""
    proc = _check(source.path)
    if proc.returncode == 0:
        return
    raise NotebookSyntaxError(summarize_syntax_error(proc.stderr), proc.stderr)


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [node_binary(), "--check", str(path)],
        capture_output=True,
        text=True,
        errors="replace",
        check=False,
    )


def module_compiles(data: bytes) -> bool:
    """Whether node compiles `data` as an ES module (its early errors: `node --check`; a
    module cannot be compiled without running it inside the kernel, as CommonJS can)."""
    return _module_compiles(data, node_binary())


@lru_cache(maxsize=16)
def _module_compiles(data: bytes, binary: str) -> bool:
    proc = subprocess.run(
        [binary, "--check", "--input-type=module"],
        input=data,
        capture_output=True,
        check=False,
    )
    return proc.returncode == 0


def summarize_syntax_error(stderr: str) -> str:
    """`file:line: SyntaxError: message` from node's multi-line report."""
    lines = stderr.splitlines()
    where = lines[0] if lines else "?"
    message = next((ln for ln in lines if "Error" in ln and not ln.startswith(" ")), "")
    return f"{where}: {message}".rstrip(": ")
