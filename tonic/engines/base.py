"""The Engine protocol: every way of running a notebook satisfies it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from tonic.kernel.driver import Program
from tonic.results import RunResult, Sink

if TYPE_CHECKING:
    from tonic.timetravel.choose import Chooser


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str


class Engine(Protocol):
    """Runs a Program, streaming to a Sink. Engines differ in what they can skip."""

    name: str
    description: str

    def availability(self) -> Availability: ...

    def run(self, program: Program, sink: Sink, *, timeout: float | None = None) -> RunResult: ...

    def chooser(self, program: Program) -> Chooser | None:
        """What the next run would resume from; None for an engine without snapshots."""
        ...
