"""Helpers of the store's tests: ids, image directories, what is on disk."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path


def sid(n: object) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def sid_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_tree(folder: Path, files: dict[str, bytes], mode: int = 0o600) -> Path:
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
    return folder


def read_tree(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def image_files(rnd: random.Random, pages: int = 3 << 20) -> dict[str, bytes]:
    """Something like a CRIU image directory: small descriptors and a pages image."""
    files = {f"core-{i}.img": rnd.randbytes(rnd.randint(1, 3000)) for i in range(12)}
    files["inventory.img"] = b"\x01" * 40
    files["pages-1.img"] = rnd.randbytes(pages)
    return files


def objects_on_disk(root: Path) -> set[str]:
    return {p.name for p in (root / "objects").glob("*/*")}


def referenced(root: Path) -> set[str]:
    keys: set[str] = set()
    for manifest in (root / "snapshots").glob("*/manifest.json"):
        doc = json.loads(manifest.read_text())
        for entry in doc["files"].values():
            keys.update(entry["chunks"])
        keys.update(doc["meta"].get("blobs", []))
    return keys
