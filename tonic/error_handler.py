"""Maps exceptions to exit codes: user errors are one line, bugs say where to report."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from tonic.errors import TonicError

BUG_EXIT = 3
INTERRUPT_EXIT = 130


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
