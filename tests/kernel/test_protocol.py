"""tonic's side of the kernel protocol: the event lines kernel.js sends, decoded, and the
command lines it reads, encoded exactly as before the messages had names."""

from __future__ import annotations

import pytest

from tonic.kernel import protocol
from tonic.kernel.protocol import (
    GO,
    Command,
    Error,
    Eval,
    Event,
    EventLines,
    Go,
    Hello,
    Pause,
    ProtocolError,
    continues,
    decode_event,
    encode,
)

EVENTS: dict[str, tuple[bytes, Event]] = {
    "hello": (b'{"ev":"hello","pid":4242,"kind":"cjs"}', Hello(4242, "cjs")),
    "pause": (b'{"ev":"pause","cell":2,"ms":1.5}', Pause(2, 1.5)),
    "pause, integral ms": (b'{"ev":"pause","cell":1,"ms":3}', Pause(1, 3.0)),
    "pause with a value": (
        b'{"ev":"pause","cell":3,"ms":0.25,"value":"42"}',
        Pause(3, 0.25, value="42"),
    ),
    "pause with modules": (
        b'{"ev":"pause","cell":1,"ms":2,"modules":["/p/a.js","/p/b.json"]}',
        Pause(1, 2.0, modules=("/p/a.js", "/p/b.json")),
    ),
    "pause with no new module": (
        b'{"ev":"pause","cell":4,"ms":0,"modules":[]}',
        Pause(4, 0.0, modules=()),
    ),
    "pause, value and modules": (
        b'{"ev":"pause","cell":5,"ms":1,"modules":["/m.js"],"value":"[ 1, 2 ]"}',
        Pause(5, 1.0, value="[ 1, 2 ]", modules=("/m.js",)),
    ),
    "error": (
        b'{"ev":"error","after":1,"origin":"uncaughtException","error":"Error: x\\n  at f",'
        b'"ms":7.5}',
        Error(1, "uncaughtException", "Error: x\n  at f", 7.5),
    ),
    "error, not inspected": (
        b'{"ev":"error","after":0,"origin":"unhandledRejection","error":null,"ms":0.1}',
        Error(0, "unhandledRejection", None, 0.1),
    ),
    "early error": (
        b'{"ev":"error","after":2,"origin":"early","error":"SyntaxError: y","ms":0}',
        Error(2, "early", "SyntaxError: y", 0.0),
    ),
}


@pytest.mark.parametrize("line, event", EVENTS.values(), ids=list(EVENTS))
def test_decode_event(line: bytes, event: Event) -> None:
    assert decode_event(line) == event


BAD_EVENTS = {
    "not JSON": b"Error: something",
    "not an object": b"[1, 2]",
    "no kind": b'{"cell": 1}',
    "unknown kind": b'{"ev": "bye"}',
    "pause without a cell": b'{"ev": "pause", "ms": 1}',
    "exit (said by tonic's init now)": b'{"ev": "exit", "code": 0}',
    "not UTF-8": b'{"ev": "save", "path": "\xff"}',
    "nested too deep for json": b"[" * 100000,
    "nested deeper than any event": b'{"ev": "hello", "pid": [[[[[[[[[[1]]]]]]]]]]}',
    "a list for a number": b'{"ev": "pause", "cell": [1], "ms": {"a": 1}}',
    "a huge number": b'{"ev": "pause", "cell": 1e999, "ms": 1}',
    "garbage written by the notebook": b'x{"ev": "hello", "pid": 1, "kind": "cjs"}',
}


@pytest.mark.parametrize("line", BAD_EVENTS.values(), ids=list(BAD_EVENTS))
def test_decode_event_rejects(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_event(line)


def test_brackets_in_strings_are_no_nesting() -> None:
    value = "[" * 50 + "{" * 50
    line = b'{"ev": "pause", "cell": 1, "ms": 0, "value": "' + value.encode() + b'"}'
    assert decode_event(line) == Pause(1, 0.0, value=value)


def test_event_lines_are_cut_as_they_arrive() -> None:
    lines = EventLines()
    assert lines.feed(b'{"ev": "exit"') == []
    assert lines.feed(b', "code": 0}\n{"ev"') == [b'{"ev": "exit", "code": 0}']
    assert lines.feed(b': "exit", "code": 1}\n\n') == [b'{"ev": "exit", "code": 1}', b""]
    assert lines.feed(b"") == []


def test_a_line_without_end_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protocol, "MAX_LINE", 1000)
    lines = EventLines()
    lines.feed(b"x" * 1000)
    with pytest.raises(ProtocolError, match="more than"):
        lines.feed(b"x")


COMMANDS: dict[str, tuple[Command, bytes]] = {
    "go": (GO, b'{"op": "go"}\n'),
    "go, another": (Go(), b'{"op": "go"}\n'),
    "eval": (Eval("f();"), b'{"op": "eval", "source": "f();"}\n'),
    "eval with values": (
        Eval("g()", values=(2, 3)),
        b'{"op": "eval", "source": "g()", "values": [2, 3]}\n',
    ),
    "eval, no values recorded": (
        Eval("g()", values=(), check="a\nb"),
        b'{"op": "eval", "source": "g()", "values": [], "check": "a\\nb"}\n',
    ),
    "eval with a check": (
        Eval("h()", (1,), "const x = 1;\n"),
        b'{"op": "eval", "source": "h()", "values": [1], "check": "const x = 1;\\n"}\n',
    ),
    "non-ASCII": (Eval("'\u00e9'"), b'{"op": "eval", "source": "\'\\u00e9\'"}\n'),
}


@pytest.mark.parametrize("command, line", COMMANDS.values(), ids=list(COMMANDS))
def test_encode(command: Command, line: bytes) -> None:
    """Byte for byte the lines tonic sent when commands were dicts (json.dumps, newline)."""
    assert encode(command) == line


@pytest.mark.parametrize(
    "command, expected", [(GO, False), (Go(), False), (Eval("x"), True), (Eval("", (), ""), True)]
)
def test_continues(command: Command, expected: bool) -> None:
    assert continues(command) is expected
