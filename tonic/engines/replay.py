"""The replay engine: no snapshots; every run executes the whole notebook afresh.

Always available, and the correctness reference every snapshot engine is tested against.
"""

from __future__ import annotations

from tonic.engine_catalog import DESCRIPTIONS
from tonic.engines.base import Availability
from tonic.errors import EngineError
from tonic.kernel.driver import Program, run_kernel
from tonic.results import RunResult, Sink
from tonic.settings import node_binary
from tonic.timetravel.choose import Chooser


class ReplayEngine:
    name = "replay"
    description = DESCRIPTIONS[name]

    def availability(self) -> Availability:
        try:
            node = node_binary()
        except EngineError as err:
            return Availability(False, str(err))
        return Availability(True, f"node at {node}")

    def run(self, program: Program, sink: Sink, *, timeout: float | None = None) -> RunResult:
        return run_kernel(program, sink, engine=self.name, timeout=timeout)

    def chooser(self, program: Program) -> Chooser | None:
        return None
