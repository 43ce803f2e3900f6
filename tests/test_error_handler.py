"""`handled`, the one wrapper of every command's body: exit codes and messages."""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pytest
from click.exceptions import Exit

from tonic.error_handler import BUG_EXIT, INTERRUPT_EXIT, handled
from tonic.errors import CellTimeoutError, TonicError


def _raising(exc: BaseException) -> Callable[[], None]:
    @handled
    def body() -> int:
        raise exc

    return body


@pytest.mark.parametrize(
    ("exc", "code", "stderr"),
    [
        (TonicError("no such notebook"), 2, "tonic: error: no such notebook\n"),
        (CellTimeoutError("too slow"), 124, "tonic: error: too slow\n"),
        (KeyboardInterrupt(), INTERRUPT_EXIT, "tonic: interrupted\n"),
        (BrokenPipeError(), 1, ""),
    ],
)
def test_known_failures_are_one_line_and_a_code(
    exc: BaseException, code: int, stderr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    body = _raising(exc)
    with pytest.raises(SystemExit) as exited:
        body()
    assert exited.value.code == code
    assert capsys.readouterr().err == stderr


def test_a_bug_says_so_with_its_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    body = _raising(ValueError("oops"))
    with pytest.raises(SystemExit) as exited:
        body()
    assert exited.value.code == BUG_EXIT
    err = capsys.readouterr().err
    assert err.startswith("tonic: internal error (a bug in tonic); details follow\n")
    assert "Traceback" in err and "ValueError: oops" in err


def test_the_result_is_the_exit_code() -> None:
    @handled
    def five() -> int:
        return 5

    @handled
    def nothing() -> None:
        pass

    with pytest.raises(Exit) as exited:
        five()
    assert exited.value.exit_code == 5
    assert nothing() is None


def test_typer_sees_the_body() -> None:
    """typer reads a command's name, help and options from the wrapper."""

    def body(file: str, *, force: bool = False) -> int:
        """Do it."""
        return 0

    wrapped = handled(body)
    assert wrapped.__name__ == "body" and wrapped.__doc__ == "Do it."
    assert inspect.signature(wrapped) == inspect.signature(body)
