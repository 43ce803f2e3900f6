"""tonic.observe against real process trees in real PID namespaces (`unshare --pid --fork`,
as tonic starts node): what they open, create, write, delete and rename is seen, what
other processes do at the same time never is.

Skipped where observing cannot work (not root, no fanotify), unless TONIC_REQUIRE_ENGINES
names criu (the engine that needs it): then those tests fail."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import required_engines
from tonic.observe import Activity, Observer, unavailable


@pytest.fixture(scope="module")
def observer() -> Iterator[Observer]:
    why = unavailable()
    if why is not None:
        if "criu" in required_engines():
            pytest.fail(f"file observing is required here (criu) but cannot work: {why}")
        pytest.skip(f"file observing unavailable: {why}")
    with Observer() as ob:
        yield ob


class Tree:
    """`unshare --pid --fork setsid sh -c 'read go; "$@"' tonic ARGV`: waits for a line on
    stdin before it runs ARGV, so that the observer attaches first."""

    def __init__(self, *argv: str, cwd: Path) -> None:
        script = 'read go; "$@"; echo done; read end'
        self.proc = subprocess.Popen(
            ["unshare", "--pid", "--fork", "setsid", "sh", "-c", script, "tonic", *argv],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        deadline = time.monotonic() + 10
        while not children.read_text().split():
            assert time.monotonic() < deadline, "unshare started no init"
            time.sleep(0.001)
        self.init = int(children.read_text().split()[0])

    def run(self) -> None:
        """Runs ARGV and returns once it finished (the tree then pauses, still alive)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline() == b"done\n"

    def end(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(10)


def observe(ob: Observer, *argv: str, cwd: Path) -> Activity:
    tree = Tree(*argv, cwd=cwd)
    try:
        ob.attach(tree.init)
        ob.take()  # the shell's start-up
        tree.run()
        return ob.take()
    finally:
        tree.end()


def under(activity: Activity, root: Path) -> list[tuple[str, str]]:
    """The events at paths under root, as (kind, path relative to root)."""
    base = str(root)
    return [
        (k, os.path.relpath(p, base))
        for k, p in activity.events
        if p == base or p.startswith(base + "/")
    ]


def in_order(events: list[tuple[str, str]], expected: list[tuple[str, str]]) -> bool:
    it = iter(events)
    return all(any(e == x for e in it) for x in expected)


PY = sys.executable
# (name, shell script run in tmp_path (which holds old.txt, other.txt and dir/inner), the
# events expected in that order, events that must not be there)
CASES = [
    ("read", "cat old.txt > /dev/null", [("open", "old.txt")], [("write", "old.txt")]),
    ("list a directory", "ls dir > /dev/null", [("opendir", "dir")], [("open", "dir/inner")]),
    (
        "create",
        "echo x > new.txt",
        [("create", "new.txt"), ("write", "new.txt")],
        [],
    ),
    ("append", "echo y >> old.txt", [("open", "old.txt"), ("write", "old.txt")], []),
    ("truncate with O_TRUNC", ": > old.txt", [("write", "old.txt")], [("create", "old.txt")]),
    (
        "ftruncate",
        f"{PY} -c \"import os; f = os.open('old.txt', os.O_RDWR); os.ftruncate(f, 1)\"",
        [("write", "old.txt")],
        [],
    ),
    ("truncate(2)", "truncate -s 0 old.txt", [("write", "old.txt")], []),
    ("delete", "rm old.txt", [("delete", "old.txt")], []),
    ("rename", "mv old.txt moved.txt", [("move_from", "old.txt"), ("move_to", "moved.txt")], []),
    (
        "rename over an existing file",
        "mv old.txt other.txt",
        [("move_from", "old.txt"), ("move_to", "other.txt")],
        [],
    ),
    ("mkdir", "mkdir made", [("mkdir", "made")], []),
    ("rmdir", "rm dir/inner && rmdir dir", [("delete", "dir/inner"), ("rmdir", "dir")], []),
    (
        "a directory renamed after a write in it",
        "echo z > dir/inner && mv dir dir2",
        [("write", "dir/inner"), ("move_from", "dir"), ("move_to", "dir2")],
        [("write", "dir2/inner")],
    ),
    (
        "a temporary folder",
        "mkdir t && echo 1 > t/f && rm -r t",
        [("mkdir", "t"), ("create", "t/f"), ("delete", "t/f"), ("rmdir", "t")],
        [],
    ),
    (
        "a short-lived child of a child",
        "sh -c 'sh -c \"echo deep > deep.txt\"'",
        [("create", "deep.txt"), ("write", "deep.txt")],
        [],
    ),
    (
        "node reads, lists, writes",
        "node -e \"const fs = require('fs'); fs.readFileSync('old.txt'); fs.readdirSync('dir');"
        " fs.writeFileSync('n.txt', 'n'); fs.appendFileSync('other.txt', 'o')\"",
        [("open", "old.txt"), ("opendir", "dir"), ("create", "n.txt"), ("write", "other.txt")],
        [],
    ),
    (
        "node execSync child writes",
        "node -e \"require('child_process').execSync(\\\"sh -c 'echo x > ex.txt'\\\")\"",
        [("create", "ex.txt")],
        [],
    ),
]


@pytest.mark.parametrize(
    ("script", "expected", "absent"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_what_the_tree_does_is_seen(
    observer: Observer,
    tmp_path: Path,
    script: str,
    expected: list[tuple[str, str]],
    absent: list[tuple[str, str]],
) -> None:
    (tmp_path / "old.txt").write_text("old\n")
    (tmp_path / "other.txt").write_text("other\n")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inner").write_text("inner\n")
    activity = observe(observer, "sh", "-c", script, cwd=tmp_path)
    events = under(activity, tmp_path)
    assert in_order(events, expected), events
    assert not set(absent) & set(events), events
    assert activity.lost is None and not activity.uncertain


def test_net_effects(observer: Observer, tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text("old\n")
    (tmp_path / "gone.txt").write_text("gone\n")
    script = (
        "echo t > tmp && rm tmp && rm old.txt && echo r > old.txt && echo n > new && rm gone.txt"
    )
    activity = observe(observer, "sh", "-c", script, cwd=tmp_path)
    rel = {os.path.relpath(p, tmp_path) for p in activity.created}
    assert rel == {"new"}
    assert {os.path.relpath(p, tmp_path) for p in activity.deleted} == {"gone.txt"}
    changed = {os.path.relpath(p, tmp_path) for p in activity.changed}
    assert {"tmp", "old.txt", "new", "gone.txt"} <= changed
    # deleted then created again: replaced (delete before create, in that order)
    assert in_order(under(activity, tmp_path), [("delete", "old.txt"), ("create", "old.txt")])


def test_repeated_writes_are_one_event(observer: Observer, tmp_path: Path) -> None:
    code = "import os\nfor i in range(10000):\n    with open('f', 'a') as f: f.write('x')\n"
    activity = observe(observer, PY, "-c", code, cwd=tmp_path)
    events = under(activity, tmp_path)
    assert events.count(("write", "f")) == 1 and events.count(("open", "f")) == 1, events


def _foreign_writer(folder: Path, seconds: float) -> subprocess.Popen[bytes]:
    """Another program writing files in the same folder: itself and short-lived children."""
    script = (
        f"end=$(( $(date +%s) + {max(1, round(seconds))} )); i=0; "
        'while [ "$(date +%s)" -lt "$end" ]; do i=$((i+1)); echo $i > foreign-$i; '
        'sh -c "echo $i > foreign-child-$i"; cat foreign-$i > /dev/null; done'
    )
    return subprocess.Popen(["sh", "-c", script], cwd=folder)


def test_many_short_lived_children_and_a_foreign_writer(observer: Observer, tmp_path: Path) -> None:
    foreign = _foreign_writer(tmp_path, 2)
    try:
        script = 'for i in $(seq 200); do sh -c "echo $i > child-$i" & done; wait'
        activity = observe(observer, "sh", "-c", script, cwd=tmp_path)
    finally:
        foreign.wait(30)
    events = under(activity, tmp_path)
    written = {p for k, p in events if k == "write" and p.startswith("child-")}
    assert written == {f"child-{i}" for i in range(1, 201)}
    assert not [e for e in events if e[1].startswith("foreign")], events
    assert not activity.uncertain and activity.lost is None
    assert len(list(tmp_path.glob("foreign-*"))) > 10  # the foreign writer did run


def test_ignored_paths_are_never_reported(tmp_path: Path) -> None:
    if unavailable() is not None:
        pytest.skip("file observing unavailable")  # the module fixture says why
    cache = tmp_path / "cache"
    cache.mkdir()
    with Observer(ignore=[cache]) as ob:
        activity = observe(
            ob, "sh", "-c", "echo x > cache/a && mkdir cache/d && echo y > b", cwd=tmp_path
        )
    events = under(activity, tmp_path)
    assert ("create", "b") in events
    assert not [e for e in events if e[1].startswith("cache")], events


def test_two_observers_two_trees(observer: Observer, tmp_path: Path) -> None:
    with Observer() as other:
        one = Tree("sh", "-c", "echo 1 > one", cwd=tmp_path)
        two = Tree("sh", "-c", "echo 2 > two", cwd=tmp_path)
        try:
            observer.attach(one.init)
            other.attach(two.init)
            one.run()
            two.run()
            first, second = observer.take(), other.take()
        finally:
            one.end()
            two.end()
    names = {p for _, p in under(first, tmp_path)}, {p for _, p in under(second, tmp_path)}
    assert names == ({"one"}, {"two"})


def test_take_after_a_pause_sees_everything_before_it(observer: Observer, tmp_path: Path) -> None:
    """The tree writes and pauses; take() at once (no sleep) has all of it, three times."""
    code = (
        "const fs = require('fs'); let n = 0;"
        "process.stdin.on('data', () => { n++; for (let i = 0; i < 50; i++)"
        " fs.writeFileSync(`s${n}-${i}`, 'x'); require('child_process')"
        ".execSync(`echo c > c${n}`); process.stdout.write('ok\\n'); });"
    )
    tree = subprocess.Popen(
        ["unshare", "--pid", "--fork", "setsid", "sh", "-c", '"$@"', "tonic", "node", "-e", code],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert tree.stdin is not None and tree.stdout is not None
    try:
        children = Path(f"/proc/{tree.pid}/task/{tree.pid}/children")
        while not children.read_text().split():
            time.sleep(0.001)
        observer.attach(int(children.read_text().split()[0]))
        for step in (1, 2, 3):
            observer.take()
            tree.stdin.write(b"go\n")
            tree.stdin.flush()
            assert tree.stdout.readline() == b"ok\n"
            names = {p for k, p in under(observer.take(), tmp_path) if k == "create"}
            assert names == {f"s{step}-{i}" for i in range(50)} | {f"c{step}"}
    finally:
        tree.stdin.close()
        tree.kill()
        tree.wait(10)


def test_tmpfs(observer: Observer) -> None:
    if not any(m.startswith("/dev/shm ") for m in observer.marked):
        pytest.skip(f"/dev/shm not marked: {observer.unmarked}")
    folder = Path("/dev/shm") / f"tonic-observe-{os.getpid()}"
    folder.mkdir()
    try:
        activity = observe(observer, "sh", "-c", "echo x > f && rm f", cwd=folder)
        assert in_order(under(activity, folder), [("create", "f"), ("delete", "f")])
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=True)


def test_take_when_nothing_happened_is_fast(observer: Observer, tmp_path: Path) -> None:
    tree = Tree("true", cwd=tmp_path)
    try:
        observer.attach(tree.init)
        observer.take()
        start = time.perf_counter()
        for _ in range(100):
            observer.take()
        per_take = (time.perf_counter() - start) / 100
    finally:
        tree.run()
        tree.end()
    assert per_take < 0.003, f"{per_take * 1000:.2f} ms"


def test_events_read_after_a_directory_rename_keep_their_paths(
    observer: Observer, tmp_path: Path
) -> None:
    """The reader is held back (its lock taken) while the tree writes in a folder and then
    renames it: the handle is resolved after the rename, yet the write is named as it was."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inner").write_text("inner\n")
    # (the second write from another process: fanotify would merge it into the first)
    script = "echo z > dir/inner && mv dir dir2 && sh -c 'echo w > dir2/inner' && mv dir2 dir3"
    tree = Tree("sh", "-c", script, cwd=tmp_path)
    try:
        observer.attach(tree.init)
        observer.take()
        with observer._lock:
            tree.run()
        events = under(observer.take(), tmp_path)
    finally:
        tree.end()
    expected = [
        ("write", "dir/inner"),
        ("move_from", "dir"),
        ("move_to", "dir2"),
        ("write", "dir2/inner"),
        ("move_from", "dir2"),
        ("move_to", "dir3"),
    ]
    assert in_order(events, expected), events


def test_events_in_a_directory_deleted_before_they_are_read(
    observer: Observer, tmp_path: Path
) -> None:
    """The folder existed before (its handle was never seen) and is gone when the events
    are read: the rmdir's record names it."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "inner").write_text("inner\n")
    tree = Tree("sh", "-c", "echo z >> dir/inner && rm dir/inner && rmdir dir", cwd=tmp_path)
    try:
        observer.attach(tree.init)
        observer.take()
        with observer._lock:
            tree.run()
        activity = observer.take()
    finally:
        tree.end()
    expected = [("write", "dir/inner"), ("delete", "dir/inner"), ("rmdir", "dir")]
    assert in_order(under(activity, tmp_path), expected), activity
    assert activity.lost is None


def test_signals_for_tonic_reach_its_main_thread(observer: Observer) -> None:
    """The reader thread blocks SIGINT and SIGTERM: sent to tonic, the kernel gives them
    to the main thread, whose wait they interrupt (a warm server's worker, whose server
    was killed, once ran on for good: its SIGTERM had gone to this thread)."""
    status = Path(f"/proc/self/task/{observer._thread.native_id}/status")
    wanted = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
    deadline = time.monotonic() + 5  # (the thread blocks them as it starts)
    while True:
        line = next(ln for ln in status.read_text().splitlines() if ln.startswith("SigBlk:"))
        blocked = int(line.split()[1], 16)
        if blocked & wanted == wanted or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert blocked & wanted == wanted, line
