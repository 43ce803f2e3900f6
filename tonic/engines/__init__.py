"""The engine registry: every engine tonic knows, by name."""

from __future__ import annotations

from tonic.engines.base import Availability, Engine
from tonic.engines.replay import ReplayEngine
from tonic.errors import EngineError

ENGINES: dict[str, Engine] = {
    "replay": ReplayEngine(),
}
DEFAULT_ENGINE = "replay"


def get_engine(name: str | None) -> Engine:
    """The engine called `name` (the default when None), if it can run here."""
    key = name or DEFAULT_ENGINE
    engine = ENGINES.get(key)
    if engine is None:
        known = ", ".join(sorted(ENGINES))
        raise EngineError(f"unknown engine {key!r} (known: {known})")
    available = engine.availability()
    if not available.ok:
        raise EngineError(f"engine {key!r} cannot run here: {available.reason}")
    return engine


__all__ = ["DEFAULT_ENGINE", "ENGINES", "Availability", "Engine", "get_engine"]
