"""The recorded-outputs file committed beside a notebook: `NOTEBOOK.outputs.json`.

It holds, for every code cell, what the cell printed (stdout, stderr), its value and its
error, plus the exit code and what ran after the last cell, as one JSON document:

    {
      "format": "tonic-outputs/1",
      "notebook": "analysis.js",
      "exit_code": 0,
      "signal": null,
      "cells": [{"cell": 2, "title": "load", "status": "ok", "stdout": "rows 3\\n",
                 "stderr": "", "value": "3", "error": null}],
      "after": {"stdout": "", "stderr": "", "error": null}
    }

It is deterministic: no timings, no engine, no line numbers of cells (moving a cell
does not change what it prints), and the notebook's folder is written `.` in every text
(`/home/me/proj/data.csv` becomes `./data.csv`), so the file is the same on every
machine that gets the same outputs. `tonic check --update-outputs` writes it; `tonic
check --outputs` fails when it differs from a fresh (or replayed) run.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from tonic.errors import InputError
from tonic.results import RunResult

FORMAT = "tonic-outputs/1"
SUFFIX = ".outputs.json"
SHOWN = 60  # characters of a differing text shown in a staleness message


def outputs_path(notebook: Path) -> Path:
    return notebook.with_name(notebook.name + SUFFIX)


def normalize(text: str, directory: Path) -> str:
    """Write the notebook's folder as `.` so that the text does not depend on where."""
    d = str(directory)
    return text.replace(f"file://{d}/", "./").replace(f"{d}/", "./").replace(d, ".")


def _text(data: bytearray | str | None, directory: Path) -> str | None:
    if data is None:
        return None
    raw = data if isinstance(data, str) else data.decode("utf-8", "replace")
    return normalize(raw, directory)


def outputs_of(result: RunResult, path: Path) -> dict[str, object]:
    """The recorded-outputs document of a run of the notebook at `path` (absolute)."""
    directory = path.parent
    cells = [
        {
            "cell": cr.cell.index,
            "title": cr.cell.title,
            "status": cr.status,
            "stdout": _text(cr.stdout, directory),
            "stderr": _text(cr.stderr, directory),
            "value": _text(cr.value, directory),
            "error": _text(cr.error, directory),
        }
        for cr in result.cells
        if cr.cell.runs
    ]
    return {
        "format": FORMAT,
        "notebook": path.name,
        "exit_code": result.exit_code,
        "signal": result.signal,
        "cells": cells,
        "after": {
            "stdout": _text(result.tail.stdout, directory),
            "stderr": _text(result.tail.stderr, directory),
            "error": _text(result.tail.error, directory),
        },
    }


def dumps(outputs: dict[str, object]) -> str:
    return json.dumps(outputs, indent=2, ensure_ascii=False) + "\n"


def read(path: Path) -> dict[str, object] | None:
    """The recorded outputs at `path`, None when there is no such file."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the recorded outputs: {err}") from None
    try:
        value = json.loads(raw)
    except ValueError as err:
        raise InputError(f"{path}: not a recorded-outputs file (bad JSON: {err})") from None
    if not isinstance(value, dict) or value.get("format") != FORMAT:
        raise InputError(f'{path}: not a recorded-outputs file (no "format": {FORMAT!r})')
    return value


def write(path: Path, outputs: dict[str, object]) -> bool:
    """Write the file atomically; False when it already held exactly this."""
    text = dumps(outputs)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    replace_file(path, text)
    return True


def replace_file(path: Path, text: str, mode: int = 0o644) -> None:
    """`text` as the file `path` (with `mode`), all at once: a new file beside it renamed
    over it, so that a reader never sees half of it."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _short(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + '..."'


def difference(recorded: dict[str, object], current: dict[str, object]) -> str | None:
    """The first way `current` differs from `recorded`, in words, or None when equal."""
    if recorded == current:
        return None
    for key in ("exit_code", "signal"):
        if recorded.get(key) != current.get(key):
            return f"{key}: recorded {_short(recorded.get(key))}, now {_short(current.get(key))}"
    old, new = recorded.get("cells"), current.get("cells")
    if not isinstance(old, list) or not isinstance(new, list) or len(old) != len(new):
        count = len(old) if isinstance(old, list) else 0
        return f"code cells: recorded {count}, now {len(new) if isinstance(new, list) else 0}"
    for before, after in zip(old, new, strict=True):
        if before == after:
            continue
        if not isinstance(before, dict) or not isinstance(after, dict):
            return "a cell's record is malformed"
        label = f"cell {after.get('cell')}"
        for key in ("cell", "title", "status", "stdout", "stderr", "value", "error"):
            if before.get(key) != after.get(key):
                return (
                    f"{label} {key}: recorded {_short(before.get(key))}, "
                    f"now {_short(after.get(key))}"
                )
    for key in ("stdout", "stderr", "error"):
        a, b = recorded.get("after"), current.get("after")
        ra = a.get(key) if isinstance(a, dict) else None
        rb = b.get(key) if isinstance(b, dict) else None
        if ra != rb:
            return f"after the last cell, {key}: recorded {_short(ra)}, now {_short(rb)}"
    return "the recorded outputs differ (format or notebook name)"
