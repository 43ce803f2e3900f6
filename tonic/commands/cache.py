"""`tonic cache ls | gc | clear`: look at and trim the snapshot cache."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from tonic import settings
from tonic.engines.docker.gc import collect_garbage, image_bytes
from tonic.errors import InputError
from tonic.store import SnapshotInfo, Store, hot
from tonic.store.ingest import settled
from tonic.store.usage import KINDS, usage


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
    disk = _disk(store)
    free = _reclaimable(store, snaps)
    if as_json:
        rows = [
            {
                "id": s.id,
                "notebook": s.meta.get("path"),
                "cell": s.meta.get("pause"),
                "created": s.created,
                "used": store.last_used(s),
                "bytes": s.logical_bytes,
            }
            for s in snaps
        ]
        payload = {
            "root": str(store.root),
            "snapshots": rows,
            "stored_bytes": stats.stored_bytes,
            "logical_bytes": stats.logical_bytes,
            "disk": disk,
            "total_bytes": sum(v for v in disk.values() if v is not None),
            "reclaimable": free,
            "reclaimable_bytes": sum(v for v in free.values() if v is not None),
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
        return
    console = Console(highlight=False, soft_wrap=True)
    table = Table(box=None, pad_edge=False)
    for column in ("notebook", "after cell", "made", "used", "image", "id"):
        table.add_column(column)
    for s in snaps:
        table.add_row(
            str(s.meta.get("path", "?")),
            str(s.meta.get("pause", "?")),
            _age(s.created),
            _age(store.last_used(s)),
            human(s.logical_bytes),
            s.id[:12],
        )
    console.print(table)
    console.print(
        f"{len(snaps)} snapshots in {store.root}: {human(stats.logical_bytes)} of images "
        f"stored in {human(stats.stored_bytes)}"
    )
    for kind, size in disk.items():
        if size:
            console.print(f"  {human(size):>10}  {DISK_KINDS[kind]}")
    console.print(f"  {human(sum(v for v in disk.values() if v)):>10}  in all, on disk")
    console.print(
        f"  {human(sum(v for v in free.values() if v)):>10}  of it `tonic cache gc` would free"
        " (snapshots of notebooks that are gone, chunks and docker images no snapshot needs,"
        " leftovers, unpacked images over $TONIC_HOT_CACHE); --max-size SIZE frees more,"
        " the least recently used snapshots first"
    )


# The kinds of what a cache takes on disk: its folder's (store/usage.py), and the docker
# engine's images of it.
DISK_KINDS = {**KINDS, "docker": "docker images of this cache"}


def _disk(store: Store) -> dict[str, int | None]:
    """Bytes on disk by kind: the cache folder's, as du counts them, and the docker
    engine's images (None: no daemon answers)."""
    found: dict[str, int | None] = dict(usage(store.root))
    found["docker"] = image_bytes(store.root)
    return found


def _reclaimable(store: Store, snaps: list[SnapshotInfo]) -> dict[str, int | None]:
    """What a plain `gc` would free, by kind (as _disk's keys): it is gc's own dry run
    (`snaps`: the store's snapshots)."""
    report = store.gc(keep=_notebook_exists, dry_run=True)
    gone = set(report.removed_ids)
    survivors = [s for s in snaps if s.id not in gone]
    ids = {s.id for s in survivors}
    return {
        "stored": report.bytes_freed,
        "unpacked": hot.trim(store.root, hot.budget(), keep_ids=ids, dry_run=True),
        "temporary": report.tmp_bytes,
        "docker": image_bytes(store.root, doomed_but=_docker_images(survivors)),
    }


def _notebook_exists(info: SnapshotInfo) -> bool:
    path = info.meta.get("path")
    return isinstance(path, str) and os.path.exists(path)


def _total(store: Store) -> int:
    return sum(v for v in _disk(store).values() if v is not None)


def gc(*, max_size: str | None) -> None:
    store = Store()
    limit = parse_size(max_size) if max_size is not None else None
    with settled(store.root):
        before = _total(store) if limit is not None else 0
        report = store.gc(keep=_notebook_exists)
        snaps = store.snapshots()
        freed = hot.trim(store.root, hot.budget(), keep_ids={s.id for s in snaps})
        containers, images = collect_garbage(store.root, _docker_images(snaps))
        dropped, after = _fit(store, limit) if limit is not None else (0, 0)
    docker = (
        f"; docker: {containers} containers, {images} images removed"
        if images or containers
        else ""
    )
    print(f"tonic cache gc: {report}; {human(freed)} of unpacked images dropped{docker}")
    if limit is not None:
        print(
            f"tonic cache gc: --max-size {max_size}: {dropped} more "
            f"{'snapshot' if dropped == 1 else 'snapshots'} dropped, least recently used "
            f"first; {human(max(before - after, 0))} freed, {human(after)} left"
            + ("" if after <= limit else " (all that is left is in use or not tonic's to drop)")
        )


def _fit(store: Store, limit: int) -> tuple[int, int]:
    """Drop snapshots, least recently used first, until the whole cache fits in `limit`
    bytes; the newest snapshot of each notebook goes last. How many were dropped, and
    the bytes left."""
    dropped = 0
    while (total := _total(store)) > limit:
        snaps = store.snapshots()
        if not snaps:
            break
        newest: dict[object, str] = {}
        for s in sorted(snaps, key=store.last_used):
            newest[s.meta.get("path")] = s.id
        order = sorted(snaps, key=lambda s: (s.id in newest.values(), store.last_used(s)))
        victim = order[0].id
        store.gc(keep=_other_than(victim))
        hot.drop(store.root, victim)
        collect_garbage(store.root, _docker_images(store.snapshots()))
        dropped += 1
    return dropped, total


def _other_than(snapshot_id: str) -> Callable[[SnapshotInfo], bool]:
    return lambda info: info.id != snapshot_id


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
