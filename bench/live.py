"""`make bench` rows of `tonic watch`: from a save to the result it sets off (the edited
last cell's output line, and the run's summary line after it), for an edit of the last
cell of the 20 x 0.5 s notebook, and for a save of the same bytes."""

from __future__ import annotations

import os
import select
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

TONIC = [sys.executable, "-m", "tonic"]


class _Watch:
    def __init__(self, nb: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [*TONIC, "watch", "--engine", "criu", str(nb)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
        )
        assert self.proc.stdout is not None
        self.out = self.proc.stdout.fileno()
        self.rest = b""

    def until(self, text: bytes, timeout: float = 120.0) -> float:
        """Seconds until a line holding `text` shows (the bench stops without one)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            ready, _, _ = select.select([self.out], [], [], 1.0)
            if not ready:
                continue
            data = os.read(self.out, 65536)
            if not data:
                break
            self.rest += data
            *lines, self.rest = self.rest.split(b"\n")
            if any(text in line for line in lines):
                return time.monotonic() - started
        self.stop()
        sys.exit(f"bench: tonic watch never showed {text.decode()!r}")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(timeout=30)


def watch_rows(
    nb: Path,
    env: dict[str, str],
    text: Callable[[int], str],
    per_cell: float,
    shown: Callable[[int], str],
) -> list[tuple[str, str, str]]:
    """`text(n)`: the notebook with its last cell printing n, `shown(n)` that line."""
    print("bench: tonic watch, first run and three saves ...", file=sys.stderr)
    nb.write_text(text(300))
    watch = _Watch(nb, env)
    watch.until(b"for changes")
    edits, ends, same = [], [], []
    for edit in range(1, 4):
        time.sleep(0.5)  # as a user saves: a while after the last run ended
        nb.write_text(text(300 + edit))
        edits.append(watch.until(shown(300 + edit).encode()))
        ends.append(edits[-1] + watch.until(b"for changes"))
        time.sleep(0.5)
        nb.write_text(text(300 + edit))
        same.append(watch.until(b"to the same bytes"))
    watch.stop()
    edit, end, unchanged = (
        statistics.median(edits),
        statistics.median(ends),
        statistics.median(same),
    )
    return [
        (
            "tonic watch: save of an edit of the last cell, to its result (median of 3)",
            f"{edit:.2f} s",
            f"the cell's {per_cell:.1f} s + {(edit - per_cell) * 1000:.0f} ms (goal: + 20 ms; "
            f"the run's summary line after {end:.2f} s)",
        ),
        (
            "tonic watch: save of the same bytes, to its answer (median of 3)",
            f"{unchanged * 1000:.0f} ms",
            "goal <= 20 ms",
        ),
    ]
