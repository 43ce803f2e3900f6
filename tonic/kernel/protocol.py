"""The messages between tonic and the kernel (kernel.js), one JSON object a line.

Events go from the kernel to tonic on its fd 4, `{"ev": KIND, ...}`; commands from tonic
to the kernel on its fd 3, `{"op": KIND, ...}`, one answering each pause. kernel.js
builds and reads the same shapes (its `events` and `commands`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from tonic.errors import EngineError


class ProtocolError(EngineError):
    """A line from the kernel that is not one of its events."""


# -- events: kernel -> tonic ------------------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """The kernel is in place, before the notebook's first line runs."""

    pid: int
    kind: str  # the module kind node runs the notebook as: commonjs | esm
    # a TypeScript notebook's: how node runs its types (strip | transform), "" where it
    # cannot (before node 22.18: as JavaScript); None for JavaScript
    typescript: str | None = None


@dataclass(frozen=True)
class Continuing:
    """A restored kernel checked the edited file it was told to continue with, and runs it
    (nothing it prints comes before this)."""


CONTINUING = Continuing()


@dataclass(frozen=True)
class Seen:
    """What a cell used of its surroundings, as the kernel saw it (snapshot runs)."""

    env: tuple[str, ...] = ()  # the environment variables it read
    all_env: bool = False  # it listed the environment, or started a child or worker
    cwd: bool = False  # the working directory mattered to it
    probes: tuple[str, ...] = ()  # absolute paths fs looked up (stat, exists, opens)
    worker: bool = False  # it started a worker thread

    def tokens(self, notebook: str) -> list[str]:
        """What the cell used, as the tokens of timetravel/deps.py."""
        found = [f"env:{name}" for name in self.env]
        if self.all_env:
            found.append("env:*")
        if self.cwd:
            found.append("cwd")
        if self.worker:
            # A worker loads its file while the cell goes on: the notebook's own file
            # (most often) may be read after the pause was observed.
            found.append(f"file:{notebook}")
        return found + [f"path:{p}" for p in self.probes]


@dataclass(frozen=True)
class Pause:
    """Cell `cell` ran to its end; the kernel blocks until a command answers."""

    cell: int
    ms: float
    value: str | None = None  # its completion value, inspected (when asked for)
    modules: tuple[str, ...] | None = None  # files its require() loaded (snapshot runs)
    seen: Seen | None = None  # what it used (snapshot runs)
    # its value's rich forms: MIME type to text, or "base64:" and the bytes' base64
    mime: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Error:
    """An uncaught error (`origin` as node's uncaughtExceptionMonitor says, or "early":
    the edited file of a continued run does not compile)."""

    after: int  # the last pause before it (0: none yet)
    origin: str
    error: str | None  # its description, when the run inspects
    ms: float | None  # time since the last pause


@dataclass(frozen=True)
class Save:
    """The notebook's main thread is about to change (or open) `path`, an absolute path,
    for the first time in this process; the kernel waits for SAVED."""

    path: str


Event = Hello | Pause | Error | Save | Continuing


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _hello(msg: dict[str, object]) -> Hello:
    ts = msg.get("typescript")
    return Hello(int(str(msg["pid"])), str(msg["kind"]), ts if isinstance(ts, str) else None)


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _seen(value: object) -> Seen | None:
    if not isinstance(value, dict):
        return None
    return Seen(
        env=_strings(value.get("env")),
        all_env=bool(value.get("all")),
        cwd=bool(value.get("cwd")),
        probes=_strings(value.get("probes")),
        worker=bool(value.get("worker")),
    )


def _pause(msg: dict[str, object]) -> Pause:
    value = msg.get("value")
    modules = msg.get("modules")
    return Pause(
        cell=int(str(msg["cell"])),
        ms=float(str(msg.get("ms", 0.0))),
        value=value if isinstance(value, str) else None,
        modules=_strings(modules) if isinstance(modules, list) else None,
        seen=_seen(msg.get("seen")),
        mime=_mime(msg.get("mime")),
    )


def _mime(value: object) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        return ()
    return tuple((str(k), v) for k, v in value.items() if isinstance(v, str))


def _error(msg: dict[str, object]) -> Error:
    error = msg.get("error")
    return Error(
        after=int(str(msg.get("after", 0))),
        origin=str(msg.get("origin", "")),
        error=error if isinstance(error, str) else None,
        ms=_number(msg.get("ms")),
    )


_EVENTS: dict[str, Callable[[dict[str, object]], Event]] = {
    "save": lambda msg: Save(str(msg["path"])),
    "hello": _hello,
    "pause": _pause,
    "error": _error,
    "continuing": lambda _msg: CONTINUING,
}


# No event of the kernel's nests deeper than this, nor is longer: a line that does came
# from elsewhere (a notebook writing to the event channel).
MAX_DEPTH = 8
MAX_LINE = 256 << 20
_STRING_RE = re.compile(rb'"(?:[^"\\]|\\.)*"')


def _too_deep(line: bytes) -> bool:
    depth = 0
    for c in _STRING_RE.sub(b"", line):
        if c in b"[{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif c in b"]}":
            depth -= 1
    return False


def _bad(what: str, line: bytes | bytearray) -> ProtocolError:
    return ProtocolError(
        f"the kernel's event channel carried {what} (did the notebook write to it?): "
        f"{bytes(line[:200])!r}"
    )


def decode_event(line: bytes) -> Event:
    """One event line (without its newline)."""
    if _too_deep(line):
        raise _bad("a line nested too deep", line)
    try:
        msg = json.loads(line)
    except (ValueError, RecursionError):
        raise _bad("a line that is not JSON", line) from None
    decode = _EVENTS.get(str(msg.get("ev"))) if isinstance(msg, dict) else None
    if decode is None:
        raise _bad("an unknown event", line)
    try:
        return decode(msg)
    except (KeyError, ValueError, TypeError) as err:
        raise _bad(f"a malformed event ({err})", line) from None


class EventLines:
    """The event channel's bytes as they arrive, cut into lines."""

    def __init__(self) -> None:
        self.pending = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines `chunk` completes (ProtocolError once a line outgrows MAX_LINE)."""
        start = len(self.pending)
        self.pending += chunk
        end = self.pending.rfind(b"\n", start)
        if end == -1:
            if len(self.pending) > MAX_LINE:
                raise _bad(f"a line of more than {MAX_LINE >> 20} MiB", self.pending)
            return []
        lines = bytes(self.pending[:end]).split(b"\n")
        del self.pending[: end + 1]
        return lines


# -- commands: tonic -> kernel ----------------------------------------------------------


@dataclass(frozen=True)
class Go:
    """Go on with the code the process compiled."""


@dataclass(frozen=True)
class Eval:
    """Continue with `source`, the edited rest of the notebook (timetravel/continuation/)."""

    source: str
    values: tuple[int, ...] | None = None  # the cells whose values to record from here on
    check: str | None = None  # the whole edited file: compiled first, for early errors
    # Names the sloppy suffix reads that the file never declares: each must exist on the
    # global object at the pause, else the kernel stops ("unfit") and tonic runs afresh.
    free: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Setup:
    """Sent to a restored kernel before the command that answers its pause: this run's
    environment and working directory (the snapshot's run may have had others, which
    its cells did not use), and whether values and errors are inspected."""

    env: dict[str, str]
    cwd: str
    inspect: bool


Command = Go | Eval

GO = Go()
# The origins of an Error that stop a continued run before anything of it is shown (it
# runs afresh): the edited file does not compile; a name the edited cells call is missing.
EARLY = "early"
UNFIT = "unfit"
# Why a continued run stopped before anything of it was shown (it runs afresh).
ABORTS = {
    EARLY: "the edited file does not compile: ran afresh for node's report",
    UNFIT: (
        "the edited cells call {}, which does not exist where they would resume (in "
        "sloppy code the eval's ReferenceError would point elsewhere than node's): ran afresh"
    ),
}
SAVED = b'{"op":"saved"}\n'  # the answer to a Save


def continues(command: Command) -> bool:
    """Whether the command continues the process with an edited rest of the notebook."""
    return isinstance(command, Eval)


def encode(command: Command | Setup) -> bytes:
    """The command's line, newline included."""
    msg: dict[str, object]
    if isinstance(command, Setup):
        msg = {"op": "setup", "env": command.env, "cwd": command.cwd, "inspect": command.inspect}
    elif isinstance(command, Go):
        msg = {"op": "go"}
    else:
        msg = {"op": "eval", "source": command.source}
        if command.values is not None:
            msg["values"] = list(command.values)
        if command.check is not None:
            msg["check"] = command.check
        if command.free is not None:
            msg["free"] = list(command.free)
    return json.dumps(msg).encode() + b"\n"
