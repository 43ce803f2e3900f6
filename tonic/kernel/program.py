"""What a command runs: a notebook file made into a `Program` (parsed, instrumented), with
the environment and working directory it runs in.

Below the commands: `tonic run`, `tonic why` and the recorded runs of `tonic check` and
`tonic export` (tonic.recorded) all make their programs here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from tonic.kernel.driver import Program
from tonic.kernel.stdio import Stdio
from tonic.notebook.instrument import instrument, uninstrumented
from tonic.notebook.loader import load


def program_for(
    path: Path,
    *,
    plain: bool,
    args: list[str],
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdin: str | None = None,
    stdio: Stdio | None = None,
) -> Program:
    """What `tonic run` runs: the notebook, instrumented for the view or for --plain, run
    with `env` (default: this process's environment) in `cwd` (default: this process's
    working directory); `stdin`: the regular file this process's stdin is, which node
    then reads too; `stdio`: what node's stdout and stderr are (default: two pipes,
    all that tonic captures)."""
    _, nb = load(path)
    return Program(
        notebook=nb,
        path=Path(path).resolve(),
        instrumented=instrument(nb, values=not plain) if nb.clean else uninstrumented(nb),
        args=tuple(args),
        inspect=not plain,
        env=dict(os.environ if env is None else env),
        cwd=Path.cwd() if cwd is None else cwd,
        stdin=stdin,
        stdio=stdio or Stdio(),
    )


__all__ = ["Program", "program_for"]
