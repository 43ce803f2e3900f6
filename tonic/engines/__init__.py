"""The engine registry: every engine tonic knows, by name, best first."""

from __future__ import annotations

from tonic.engines.base import Availability, Engine
from tonic.engines.criu.engine import CriuEngine
from tonic.engines.docker.engine import DockerEngine
from tonic.engines.replay import ReplayEngine
from tonic.errors import EngineError
from tonic.kernel.driver import Program
from tonic.settings import Settings
from tonic.timetravel.planner import Planner

ENGINES: dict[str, Engine] = {
    "criu": CriuEngine(),
    "replay": ReplayEngine(),
    "docker": DockerEngine(),
}
# The first available engine of this list is the default (docker only when asked for:
# with `--engine docker` or TONIC_ENGINE=docker).
PREFERENCE = ("criu", "replay")


def get_engine(name: str | None) -> tuple[Engine, str | None]:
    """The engine called `name` (the default when None), if it can run here, and a note
    when the default had to fall back from a better engine."""
    if name is None:
        skipped: list[str] = []
        for key in PREFERENCE:
            available = ENGINES[key].availability()
            if available.ok:
                note = None
                if skipped:
                    note = f"{'; '.join(skipped)}; using the {key} engine (no snapshots)"
                return ENGINES[key], note
            skipped.append(f"the {key} engine cannot run here: {available.reason}")
        raise EngineError("no engine can run here: " + "; ".join(skipped))
    engine = ENGINES.get(name)
    if engine is None:
        known = ", ".join(sorted(ENGINES))
        raise EngineError(f"unknown engine {name!r} (known: {known})")
    available = engine.availability()
    if not available.ok:
        raise EngineError(f"engine {name!r} cannot run here: {available.reason}")
    return engine, None


def engine_for(settings: Settings, *, default: str | None = None) -> tuple[Engine, str | None]:
    """The engine `settings` name (--engine, $TONIC_ENGINE, the project's package.json:
    tonic.settings.load), else `default`, else the best that works here; the docker
    engine in the settings' image (--image, $TONIC_DOCKER_IMAGE, "image"), else tonic's
    own. A note when the default had to fall back from a better engine."""
    engine, note = get_engine(settings.engine or default)
    image = settings.image
    if image and isinstance(engine, DockerEngine):
        engine = DockerEngine(image=image)
    return engine, note


def planner_for(engine: Engine, program: Program) -> Planner | None:
    """The snapshot planner of a snapshot engine (None for replay)."""
    if isinstance(engine, CriuEngine | DockerEngine):
        return engine.planner(program)
    return None


__all__ = [
    "ENGINES",
    "PREFERENCE",
    "Availability",
    "Engine",
    "engine_for",
    "get_engine",
    "planner_for",
]
