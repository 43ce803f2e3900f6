"""`tonic cache ls | gc | clear`: look at and trim the snapshot cache."""

from __future__ import annotations

import json
import os
import sys
import time

from rich.console import Console
from rich.table import Table

from tonic import settings
from tonic.engines.docker.gc import collect_garbage
from tonic.errors import InputError
from tonic.store import SnapshotInfo, Store, hot
from tonic.store.ingest import settled


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def parse_size(text: str) -> int:
    """--max-size, in the settings' grammar of sizes (tonic.settings.parse_size)."""
    return settings.checked(
        "--max-size", text, lambda t: settings.parse_size(t, "500M, 2G"), InputError
    )


def _age(created: float) -> str:
    seconds = max(0.0, time.time() - created)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return f"{seconds:.0f}s ago"


def ls(*, as_json: bool) -> None:
    store = Store()
    with settled(store.root):
        pass
    snaps = store.snapshots()
    stats = store.stats()
    if as_json:
        rows = [
            {
                "id": s.id,
                "notebook": s.meta.get("path"),
                "cell": s.meta.get("pause"),
                "created": s.created,
                "bytes": s.logical_bytes,
            }
            for s in snaps
        ]
        payload = {
            "root": str(store.root),
            "snapshots": rows,
            "stored_bytes": stats.stored_bytes,
            "logical_bytes": stats.logical_bytes,
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    console = Console(highlight=False, soft_wrap=True)
    table = Table(box=None, pad_edge=False)
    for column in ("notebook", "after cell", "made", "image", "id"):
        table.add_column(column)
    for s in snaps:
        table.add_row(
            str(s.meta.get("path", "?")),
            str(s.meta.get("pause", "?")),
            _age(s.created),
            human(s.logical_bytes),
            s.id[:12],
        )
    console.print(table)
    console.print(
        f"{len(snaps)} snapshots in {store.root}: {human(stats.logical_bytes)} of images "
        f"stored in {human(stats.stored_bytes)}"
    )


def gc(*, max_size: str | None) -> None:
    store = Store()
    limit = parse_size(max_size) if max_size is not None else None

    def keep(info: object) -> bool:
        meta = getattr(info, "meta", {})
        path = meta.get("path") if isinstance(meta, dict) else None
        return isinstance(path, str) and os.path.exists(path)

    with settled(store.root):
        report = store.gc(keep=keep, max_bytes=limit)
        snaps = store.snapshots()
        freed = hot.trim(store.root, hot.budget(), keep_ids={s.id for s in snaps})
    containers, images = collect_garbage(store.root, _docker_images(snaps))
    docker = (
        f"; docker: {containers} containers, {images} images removed"
        if images or containers
        else ""
    )
    print(f"tonic cache gc: {report}; {human(freed)} of unpacked images dropped{docker}")


def _docker_images(snaps: list[SnapshotInfo]) -> set[str]:
    """The committed images the docker engine's snapshots need."""
    found = set()
    for s in snaps:
        engine = s.meta.get("engine")
        if isinstance(engine, dict) and engine.get("image"):
            found.add(str(engine["image"]))
    return found


def clear() -> None:
    store = Store()
    with settled(store.root):
        store.clear()
        hot.clear(store.root)
    collect_garbage(store.root, set(), everything=True)
    print(f"tonic cache clear: removed everything under {store.root}")
