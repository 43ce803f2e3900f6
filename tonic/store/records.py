"""Records: the small JSON documents other parts of tonic keep in the cache root, each
declaring the objects it needs.

    <root>/<kind>/<name>.json      {...the caller's fields..., "blobs": [sha256, ...]}

A kind is one of layout.RECORDS (runs/, files/). put() sets the document's "blobs" field
to the object ids the caller declares, and gc keeps exactly those: an id that appears
anywhere else in a record does not keep its object (except in a record an older tonic
wrote, which has no "blobs" field: see `declared`). A record is staged under tmp/ and
renamed into place while the store's shared lock is held, so a reader sees a whole
record (the new one or the one before), and a gc, which holds the lock exclusively,
sees every record published before it began. Files 0600, folders 0700.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from tonic.store.fileio import write_all
from tonic.store.layout import RECORDS, Root
from tonic.store.objects import is_id

BLOBS = "blobs"  # the field of every record that names its objects

_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z._-]{0,127}")


def _check(kind: str, name: str) -> None:
    if kind not in RECORDS:
        raise ValueError(f"unknown kind of record {kind!r} (one of {', '.join(RECORDS)})")
    if not _NAME.fullmatch(name):
        raise ValueError(f"invalid record name {name!r}")


def declared(doc: object) -> list[str]:
    """The object ids a record declares (its "blobs" field). A record with no such field
    was written by a tonic before records declared their objects: every id it names is
    kept, as that tonic's gc kept it (its next run rewrites it with the field)."""
    if isinstance(doc, dict) and BLOBS not in doc:
        return sorted(_named(doc))
    blobs = doc.get(BLOBS) if isinstance(doc, dict) else None
    return [b for b in blobs if is_id(b)] if isinstance(blobs, list) else []


def _named(value: object) -> set[str]:
    """Every object id anywhere in a JSON value (an old record's)."""
    if isinstance(value, str):
        return {value} if is_id(value) else set()
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return set().union(*(_named(v) for v in items))


class Records:
    """The records under `root`."""

    def __init__(self, root: Root) -> None:
        self.root = root

    def put(self, kind: str, name: str, doc: Mapping[str, object], blobs: Iterable[str]) -> None:
        """Write record `name` of `kind` (replacing it atomically), declaring `blobs`."""
        _check(kind, name)
        ids = sorted(set(blobs))
        bad = [b for b in ids if not is_id(b)]
        if bad:
            raise ValueError(f"not object ids: {bad[:3]}")
        data = json.dumps({**doc, BLOBS: ids}).encode()
        base = self.root.ensure()
        with self.root.shared():
            folder = base / kind
            folder.mkdir(mode=0o700, exist_ok=True)
            tmp = self.root.tmp_name(base, "rec")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            try:
                try:
                    write_all(fd, data)
                finally:
                    os.close(fd)
                os.rename(tmp, folder / f"{name}.json")
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise

    def get(self, kind: str, name: str) -> dict[str, object] | None:
        """Record `name` of `kind`, or None when there is none (or it is unreadable)."""
        _check(kind, name)
        base = self.root.reader()
        if base is None:
            return None
        try:
            with open(base / kind / f"{name}.json", "rb") as f:
                doc = json.loads(f.read())
        except (OSError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None

    @staticmethod
    def roots(base: Path) -> set[str]:
        """Every object id that some record declares."""
        roots: set[str] = set()
        for kind in RECORDS:
            try:
                entries = list(os.scandir(base / kind))
            except OSError:
                continue
            for entry in entries:
                if not entry.name.endswith(".json"):
                    continue
                with contextlib.suppress(OSError, ValueError), open(entry.path, "rb") as f:
                    roots.update(declared(json.loads(f.read())))
        return roots
