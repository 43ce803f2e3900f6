"""What the store holds (stats) and what it lets go (gc, clear).

gc holds the store's lock exclusively (everyone else who writes holds it shared), so
nothing is published meanwhile. It removes the snapshots the caller rejects and, with a
byte budget, the oldest ones, then every object nothing declares it needs. An object is
kept while
  - a snapshot's manifest names it: its chunks, and the ids in meta["blobs"];
  - a record under runs/ or files/ names it in its "blobs" field (records.py); no other
    field of a record counts, whatever it holds;
  - or its mtime is within `blob_grace` seconds (BLOB_GRACE): blobs (put_blob) are
    usually stored before the record that refers to them, outside any lock, and
    put_blob sets the mtime to now; chunks written by ingest get mtime 0, so a killed
    ingest's chunks are collected at once.
Then it removes staging leftovers (those whose owner is gone, at once; of names with no
owner, an older tonic's own at once, others after `tmp_age` seconds) and dangling tag
links, and restores missing ones. A run removes the leftovers of gone owners too
(sweep).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tonic.store.fileio import rmtree
from tonic.store.layout import (
    INDEX,
    LAYOUT,
    LOCKS,
    OWN_TMP,
    RECORDS,
    SNAPSHOTS,
    TMP,
    Root,
    name_digest,
    owner_of,
)
from tonic.store.objects import Objects
from tonic.store.records import Records
from tonic.store.snapshots import SnapshotInfo, Snapshots, info_of, objects_of
from tonic.store.usage import du

TMP_AGE = 3600.0  # foreign staging entries older than this are stale
BLOB_GRACE = 86400.0  # unreferenced objects put this recently are kept by gc


@dataclass(frozen=True)
class StoreStats:
    snapshots: int
    objects: int
    stored_bytes: int  # objects and manifests, as on disk (apparent sizes)
    logical_bytes: int  # sum of all snapshots' logical_bytes


@dataclass
class GcReport:
    snapshots_removed: int = 0
    objects_removed: int = 0
    bytes_freed: int = 0
    tmp_removed: int = 0
    tmp_bytes: int = 0
    links_removed: int = 0
    damaged_removed: int = 0
    removed_ids: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        def n(count: int, noun: str) -> str:
            return f"{count} {noun}{'' if count == 1 else 's'}"

        text = (
            f"removed {n(self.snapshots_removed, 'snapshot')} and "
            f"{n(self.objects_removed, 'object')} ({self.bytes_freed / (1 << 20):.1f} MiB freed)"
        )
        if self.damaged_removed:
            text += f", {n(self.damaged_removed, 'damaged snapshot')}"
        if self.tmp_removed:
            text += f", {n(self.tmp_removed, 'staging leftover')}"
        if self.links_removed:
            text += f", {n(self.links_removed, 'dangling tag link')}"
        return text


def stats(root: Root, objects: Objects, snapshots: Snapshots) -> StoreStats:
    base = root.reader()
    if base is None:
        return StoreStats(0, 0, 0, 0)
    snaps = snapshots.every()
    sizes = objects.sizes(base)
    stored = sum(size for size, _ in sizes.values())
    with contextlib.suppress(OSError), os.scandir(base / SNAPSHOTS) as it:
        for d in it:
            with contextlib.suppress(OSError), os.scandir(d.path) as files:
                stored += sum(f.stat(follow_symlinks=False).st_size for f in files)
    return StoreStats(
        snapshots=len(snaps),
        objects=len(sizes),
        stored_bytes=stored,
        logical_bytes=sum(s.logical_bytes for s in snaps),
    )


@dataclass
class _Kept:
    """A snapshot gc keeps (so far): its info, the objects it needs, its own bytes."""

    info: SnapshotInfo
    keys: set[str]
    size: int


def gc(
    root: Root,
    objects: Objects,
    snapshots: Snapshots,
    keep: Callable[[SnapshotInfo], bool] | None = None,
    max_bytes: int | None = None,
    *,
    blob_grace: float = BLOB_GRACE,
    tmp_age: float = TMP_AGE,
    dry_run: bool = False,
) -> GcReport:
    """Remove the snapshots `keep` rejects, then the oldest until the store holds at
    most `max_bytes`; then unreferenced objects (sparing blobs put within
    `blob_grace` seconds), staging leftovers and dangling tag links. With `dry_run`,
    nothing is removed and no lock is taken: the report says what would go."""
    report = GcReport()
    if root.reader() is None:
        return report
    assert not (dry_run and max_bytes is not None), "a dry run of --max-size is _shrink's"
    base = root.ensure()
    now = time.time()
    with contextlib.nullcontext() if dry_run else root.exclusive():
        kept = _survey(base, snapshots, keep, report, dry_run)
        sizes = objects.sizes(base)
        fresh = {k for k, (_, mtime) in sizes.items() if now - mtime < blob_grace}
        pinned = Records.roots(base) | fresh
        refs: Counter[str] = Counter()
        for snap in kept:
            refs.update(snap.keys)
        if max_bytes is not None:
            _shrink(base, snapshots, kept, refs, sizes, pinned, max_bytes, report)
        for key, (size, _) in sizes.items():
            if refs[key] > 0 or key in pinned:
                continue
            with contextlib.suppress(FileNotFoundError):
                if not dry_run:
                    os.unlink(objects.path(base, key))
                report.objects_removed += 1
                report.bytes_freed += size
        for leftover in _stale(base, tmp_age, now):
            report.tmp_removed += 1
            report.tmp_bytes += du(leftover)
            if not dry_run:
                rmtree(leftover)
        if not dry_run:
            _fix_links(base, {snap.info.id: snap.info.tag for snap in kept}, report)
    return report


def _survey(
    base: Path,
    snapshots: Snapshots,
    keep: Callable[[SnapshotInfo], bool] | None,
    report: GcReport,
    dry_run: bool,
) -> list[_Kept]:
    """Every snapshot `keep` accepts and what it refers to; the damaged ones and those
    `keep` rejects are removed (unless `dry_run`)."""
    kept: list[_Kept] = []
    for name in os.listdir(base / SNAPSHOTS):
        manifest = snapshots.load(base, name, "manifest.json")
        info = info_of(manifest) if manifest is not None else None
        if manifest is None or info is None:
            report.bytes_freed += snapshots.own_bytes(base, name)
            if dry_run or snapshots.unpublish(base, name, None):
                report.damaged_removed += 1
            continue
        if keep is not None and not keep(info):
            report.bytes_freed += snapshots.own_bytes(base, name)
            if not dry_run:
                snapshots.unpublish(base, name, info.tag)
            report.snapshots_removed += 1
            report.removed_ids.append(name)
            continue
        kept.append(_Kept(info, objects_of(manifest), snapshots.own_bytes(base, name)))
    return kept


def _shrink(
    base: Path,
    snapshots: Snapshots,
    kept: list[_Kept],
    refs: Counter[str],
    sizes: dict[str, tuple[int, float]],
    pinned: set[str],
    max_bytes: int,
    report: GcReport,
) -> None:
    """Remove the oldest of `kept` (in place) until what stays fits in `max_bytes`."""

    def held(key: str) -> bool:
        return refs[key] > 0 or key in pinned

    total = sum(size for k, (size, _) in sizes.items() if held(k))
    total += sum(snap.size for snap in kept)
    kept.sort(key=lambda snap: (snap.info.created, snap.info.id))
    while kept and total > max_bytes:
        snap = kept.pop(0)
        snapshots.unpublish(base, snap.info.id, snap.info.tag)
        report.snapshots_removed += 1
        report.removed_ids.append(snap.info.id)
        report.bytes_freed += snap.size
        total -= snap.size
        for key in snap.keys:
            refs[key] -= 1
            if not held(key) and key in sizes:
                total -= sizes[key][0]


def sweep(base: Path) -> int:
    """Remove the staging entries whose owner is gone (a live owner's stay). How many
    went."""
    stale = _stale(base)
    for leftover in stale:
        rmtree(leftover)
    return len(stale)


def _stale(base: Path, tmp_age: float | None = None, now: float = 0.0) -> list[Path]:
    """The staging entries whose owner is gone; with `tmp_age`, also those of names
    with no owner: an older tonic's own (gc holds the lock: no ingest runs) and others
    older than `tmp_age` seconds."""
    found: list[Path] = []
    try:
        with os.scandir(base / TMP) as it:
            entries = list(it)
    except OSError:
        return found
    for entry in entries:
        owner = owner_of(entry.name)
        if owner is not None:
            stale = not owner.alive()
        elif tmp_age is None:
            continue
        else:
            stale = entry.name.startswith(OWN_TMP)
            if not stale:
                with contextlib.suppress(OSError):
                    stale = now - entry.stat(follow_symlinks=False).st_mtime > tmp_age
        if stale:
            found.append(Path(entry.path))
    return found


def _fix_links(base: Path, live: dict[str, str], report: GcReport) -> None:
    """Tag links: drop dangling ones, restore missing ones (`live`: id -> tag)."""
    with os.scandir(base / INDEX) as it:
        folders = list(it)
    for folder in folders:
        if not folder.is_dir(follow_symlinks=False):
            rmtree(Path(folder.path))
            continue
        with os.scandir(folder.path) as it:
            entries = list(it)
        for entry in entries:
            tag = live.get(entry.name)
            if tag is None or name_digest(tag) != folder.name:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    report.links_removed += 1
        with contextlib.suppress(OSError):
            os.rmdir(folder.path)  # only when empty
    for snapshot_id, tag in live.items():
        Snapshots.link(base, tag, snapshot_id)


def clear(root: Root, objects: Objects) -> None:
    """Remove every snapshot, object, staging entry and record (the store's own
    directories only; anything else under the root is left alone, as are lock files,
    which other processes may hold)."""
    if root.reader() is None:
        return
    base = root.ensure()
    with root.exclusive():
        for name in (*LAYOUT, *RECORDS):
            if name != LOCKS:
                rmtree(base / name)
        root.forget()
        objects.forget()
