"""The engine registry: every engine tonic knows, by name, as a factory of its settings."""

from __future__ import annotations

from collections.abc import Callable

from tonic import settings as tonic_settings
from tonic.engine_catalog import PREFERENCE
from tonic.engines.base import Availability, Engine
from tonic.engines.criu.engine import CriuBackend
from tonic.engines.docker.engine import DockerBackend
from tonic.engines.replay import ReplayEngine
from tonic.engines.snapshots import SnapshotEngine
from tonic.errors import EngineError
from tonic.settings import Settings

# One per name of tonic.engine_catalog, in its order; the default: its PREFERENCE.
ENGINES: dict[str, Callable[[Settings], Engine]] = {
    "criu": lambda s: SnapshotEngine(CriuBackend(), s),
    "replay": lambda s: ReplayEngine(),
    "docker": lambda s: SnapshotEngine(DockerBackend(s.image), s),
}


def get_engine(name: str | None, settings: Settings | None = None) -> tuple[Engine, str | None]:
    """The engine called `name` (the default when None), if it can run here, and a note
    when the default had to fall back from a better engine."""
    given = settings or tonic_settings.current()
    if name is None:
        skipped: list[str] = []
        for key in PREFERENCE:
            engine = ENGINES[key](given)
            available = engine.availability()
            if available.ok:
                note = None
                if skipped:
                    note = f"{'; '.join(skipped)}; using the {key} engine (no snapshots)"
                return engine, note
            skipped.append(f"the {key} engine cannot run here: {available.reason}")
        raise EngineError("no engine can run here: " + "; ".join(skipped))
    factory = ENGINES.get(name)
    if factory is None:
        known = ", ".join(sorted(ENGINES))
        raise EngineError(f"unknown engine {name!r} (known: {known})")
    engine = factory(given)
    available = engine.availability()
    if not available.ok:
        raise EngineError(f"engine {name!r} cannot run here: {available.reason}")
    return engine, None


def engine_for(settings: Settings, *, default: str | None = None) -> tuple[Engine, str | None]:
    """The engine `settings` name (--engine, $TONIC_ENGINE, the project's package.json:
    tonic.settings.load), else `default`, else the best that works here; the docker
    engine in the settings' image (--image, $TONIC_DOCKER_IMAGE, "image"), else tonic's
    own. A note when the default had to fall back from a better engine."""
    return get_engine(settings.engine or default, settings)


__all__ = ["ENGINES", "PREFERENCE", "Availability", "Engine", "engine_for", "get_engine"]
