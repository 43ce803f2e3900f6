"""A detached worker that moves CRIU images into the store while (and after) tonic runs.

Taking images into the store (hashing, compressing, writing chunks) can take longer than
the dump itself; a user who edited the last cell should not wait for it. The run starts
one worker at its first snapshot and hands it each dump; the worker outlives the run,
holding the notebook's ingest lock (inherited, already taken, from the run) until it has
published everything (shared: the workers of several runs may be at work at once).
`tonic cache` commands wait for every worker (`settled`); the next run of the notebook
does not: the run names each dump it hands over as a landed snapshot (landing.py), which
a restore uses as it is until the worker has stored it.

The worker owns the dumps it is given: the run names each dump's folder for the worker
(layout.staging_name), so the folders of a worker that was killed go at the next run
(Store.sweep), and those of one still at work stay.

    python -m tonic.store.ingest STORE_ROOT   (jobs on stdin, one JSON object a line)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tonic.store import Store, hot, landing
from tonic.store.layout import INGEST_LOCK, LOCKS, Owner, staging_name


def lock_path(root: Path, notebook: Path) -> Path:
    digest = hashlib.sha256(str(notebook).encode()).hexdigest()[:32]
    return root / LOCKS / f"{INGEST_LOCK}{digest}"


def _open_lock(path: Path) -> int:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)


@contextlib.contextmanager
def settled(root: Path, notebook: Path | None = None) -> Iterator[None]:
    """Wait until no worker is storing snapshots (of `notebook`, or of any notebook)."""
    if notebook:
        paths = [lock_path(root, notebook)]
    else:
        paths = sorted((root / LOCKS).glob(f"{INGEST_LOCK}*"))
    fds = []
    try:
        for path in paths:
            fd = _open_lock(path)
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)  # (workers hold it shared)
        yield
    finally:
        for fd in fds:
            os.close(fd)


class Worker:
    """The run's side: start the worker on first use, send jobs, let it go at the end."""

    def __init__(self, root: Path, notebook: Path) -> None:
        self.root = root
        self.notebook = notebook
        self.proc: subprocess.Popen[bytes] | None = None
        self.owner: Owner | None = None  # the worker, as staging names carry it

    def start(self) -> None:
        """Start the worker (once), with the notebook's ingest lock, shared: an earlier
        run's worker may still be at work (their stores are content-addressed)."""
        if self.proc is not None:
            return
        fd = _open_lock(lock_path(self.root, self.notebook))
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            os.set_inheritable(fd, True)
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tonic.store.ingest", str(self.root)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(fd,),  # held, untouched, until the worker exits
                start_new_session=True,
            )
        finally:
            os.close(fd)  # the worker holds the lock now
        self.owner = Owner.of(self.proc.pid)

    def folder(self, kind: str = "dump") -> Path:
        """A fresh name under the store's tmp/ for a dump that this worker will own
        (starting it): its leftovers go once the worker is gone."""
        self.start()
        return staging_name(self.root, kind, self.owner or Owner(0, 0))

    def submit(self, snapshot_id: str, tag: str, images: Path, meta: dict[str, object]) -> None:
        self.start()
        job = {"id": snapshot_id, "tag": tag, "images": str(images), "meta": meta}
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(job).encode() + b"\n")
        self.proc.stdin.flush()

    def release(self) -> None:
        """No more jobs: the worker finishes them on its own."""
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()


def main() -> None:
    root = Path(sys.argv[1])
    store = Store(root)
    for line in sys.stdin.buffer:
        job = json.loads(line)
        images = Path(job["images"])
        try:
            store.ingest(job["id"], job["tag"], images, job["meta"])
            landing.lift(images)  # stored: the store's record is the one from now on
            hot.keep(root, job["id"], images)  # the next restore skips unpacking
        except Exception:
            pass
        finally:
            landing.lift(images)
            shutil.rmtree(images, ignore_errors=True)


if __name__ == "__main__":
    main()
