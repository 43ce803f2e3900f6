"""Maps exceptions to exit codes: user errors are one line, bugs say where to report."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec

from click.exceptions import Exit

from tonic.errors import TonicError

BUG_EXIT = 3
INTERRUPT_EXIT = 130

P = ParamSpec("P")


@contextmanager
def error_handler() -> Iterator[None]:
    """Run a command; turn known failures into a clean message and exit code."""
    try:
        yield
    except TonicError as err:
        sys.stderr.write(f"tonic: error: {err}\n")
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("tonic: interrupted\n")
        sys.exit(INTERRUPT_EXIT)
    except BrokenPipeError:
        # The reader of our stdout went away (e.g. `tonic run x.js | head`).
        sys.exit(1)
    except Exception:
        sys.stderr.write("tonic: internal error (a bug in tonic); details follow\n")
        traceback.print_exc()
        sys.exit(BUG_EXIT)


def handled(body: Callable[P, int | None]) -> Callable[P, None]:
    """A command's body, run under `error_handler`; an int it returns is the exit code.

    The wrapper keeps the body's name, docstring and signature (`functools.wraps`), which
    is what typer reads the command's name, help and options from.
    """

    @functools.wraps(body)
    def command(*args: P.args, **kwargs: P.kwargs) -> None:
        with error_handler():
            code = body(*args, **kwargs)
        if code is not None:
            raise Exit(code)  # typer.Exit: click exits with it

    return command
