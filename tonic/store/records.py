"""Records: the small JSON documents other parts of tonic keep in the cache root, each
declaring the objects it needs.

    <root>/<kind>/<name>.json      {...the caller's fields..., "blobs": [sha256, ...],
                                    "blake2b": checksum of the rest}

A kind is one of layout.RECORDS (runs/, files/). put() sets the document's "blobs" field
to the object ids the caller declares, and gc keeps exactly those: an id that appears
anywhere else in a record does not keep its object (except in a record an older tonic
wrote, which has no "blobs" field: see `declared`). A record is staged under tmp/ and
renamed into place while the store's shared lock is held, so a reader sees a whole
record (the new one or the one before), and a gc, which holds the lock exclusively,
sees every record published before it began. Files 0600, folders 0700.

Every record is sealed: its "blake2b" field is the checksum of the rest, as canonical
JSON (`seal`). A record whose JSON is cut short, or whose checksum does not match
(damage, a hand edit, an older tonic's record), is `DamagedRecord` to its reader, who
ignores it (`unseal`). Snapshot records (timetravel/records.py) are sealed the same way.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from tonic.store.fileio import write_all
from tonic.store.layout import RECORDS, Root, StoreError
from tonic.store.objects import is_id

BLOBS = "blobs"  # the field of every record that names its objects
SUM = "blake2b"  # the field of every record that holds the checksum of the rest


class DamagedRecord(StoreError):
    """A record that cannot be trusted: cut short, not JSON, or its checksum wrong; or
    (timetravel/) of another format, or naming a place it may not."""


def checksum(body: Mapping[str, object]) -> str:
    """The blake2b of `body` as canonical JSON (sorted keys, no spaces, ASCII)."""
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=32).hexdigest()


def seal(body: Mapping[str, object]) -> dict[str, object]:
    """`body` with its checksum beside it."""
    return {**body, SUM: checksum(body)}


def unseal(doc: object) -> dict[str, object]:
    """The body of a sealed record; DamagedRecord when it is not one or its checksum
    does not match."""
    if not isinstance(doc, dict):
        raise DamagedRecord("it is not a JSON object")
    body = {k: v for k, v in doc.items() if k != SUM}
    if SUM not in doc:
        raise DamagedRecord("it has no checksum")
    if doc[SUM] != checksum(body):
        raise DamagedRecord("its checksum does not match")
    return body


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
        data = json.dumps(seal({**doc, BLOBS: ids})).encode()
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
        """Record `name` of `kind` (without its checksum), or None when there is none;
        DamagedRecord when it is unreadable or unsealed (`unseal`)."""
        _check(kind, name)
        base = self.root.reader()
        if base is None:
            return None
        try:
            with open(base / kind / f"{name}.json", "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        except OSError as err:
            raise DamagedRecord(f"it cannot be read ({err.strerror})") from None
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):  # UnicodeDecodeError too
            raise DamagedRecord("it is not whole JSON") from None
        return unseal(doc)

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
