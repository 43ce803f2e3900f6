"""The engine registry: every engine tonic knows, by name, as a factory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tonic.config import settings_for
from tonic.engine_catalog import PREFERENCE
from tonic.engines.base import Availability, Engine, EngineOptions
from tonic.engines.criu.engine import CriuBackend
from tonic.engines.docker.engine import DockerBackend
from tonic.engines.replay import ReplayEngine
from tonic.engines.snapshots import SnapshotEngine
from tonic.errors import EngineError

# One per name of tonic.engine_catalog, in its order; the default: its PREFERENCE.
ENGINES: dict[str, Callable[[EngineOptions], Engine]] = {
    "criu": lambda o: SnapshotEngine(CriuBackend(), min_ms=o.snapshot_min_ms),
    "replay": lambda o: ReplayEngine(),
    "docker": lambda o: SnapshotEngine(DockerBackend(o.image), min_ms=o.snapshot_min_ms),
}


def get_engine(name: str | None, options: EngineOptions | None = None) -> tuple[Engine, str | None]:
    """The engine called `name` (the default when None), if it can run here, and a note
    when the default had to fall back from a better engine."""
    options = options or EngineOptions()
    if name is None:
        skipped: list[str] = []
        for key in PREFERENCE:
            engine = ENGINES[key](options)
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
    engine = factory(options)
    available = engine.availability()
    if not available.ok:
        raise EngineError(f"engine {name!r} cannot run here: {available.reason}")
    return engine, None


def engine_for(
    notebook: Path,
    name: str | None = None,
    image: str | None = None,
    *,
    default: str | None = None,
) -> tuple[Engine, str | None]:
    """The engine to run `notebook` with: `name` (a command-line option), else
    $TONIC_ENGINE, else the project's package.json ("tonic": {"engine": ...}), else
    `default`, else the best that works here; the docker engine in `image`,
    $TONIC_DOCKER_IMAGE or the project's "image", else tonic's own."""
    settings = settings_for(notebook)
    chosen = name or os.environ.get("TONIC_ENGINE") or settings.engine or default
    image = image or os.environ.get("TONIC_DOCKER_IMAGE") or settings.image
    return get_engine(chosen, EngineOptions(image=image))


__all__ = [
    "ENGINES",
    "PREFERENCE",
    "Availability",
    "Engine",
    "EngineOptions",
    "engine_for",
    "get_engine",
]
