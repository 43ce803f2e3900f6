"""The Engine protocol: every way of running a notebook satisfies it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tonic.kernel.driver import Program
from tonic.results import RunResult, Sink


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
