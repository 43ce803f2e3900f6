"""Project defaults: the `"tonic"` object of the package.json that governs a notebook.

    { "tonic": { "engine": "docker", "image": "my-node:20" } }

A command-line option wins over an environment variable ($TONIC_ENGINE,
$TONIC_DOCKER_IMAGE), which wins over these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tonic.errors import InputError
from tonic.notebook.modkind import package_type

KEYS = ("engine", "image")


@dataclass(frozen=True)
class Settings:
    engine: str | None = None
    image: str | None = None


def settings_for(notebook: Path) -> Settings:
    _, package = package_type(notebook)
    if package is None:
        return Settings()
    try:
        data = json.loads(package.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Settings()  # node reports a broken package.json itself
    section = data.get("tonic") if isinstance(data, dict) else None
    if section is None:
        return Settings()
    if not isinstance(section, dict):
        raise InputError(f'{package}: "tonic" must be an object like {{"engine": "docker"}}')
    for key, value in section.items():
        if key not in KEYS:
            raise InputError(f'{package}: unknown "tonic" setting {key!r} (known: engine, image)')
        if not isinstance(value, str) or not value:
            raise InputError(f'{package}: "tonic"."{key}" must be a non-empty string')
    return Settings(engine=section.get("engine"), image=section.get("image"))
