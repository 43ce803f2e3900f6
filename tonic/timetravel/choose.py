"""Which snapshot a run resumes from: read-only, all that `tonic why` needs.

A snapshot is taken at pause k (after cell k). It is found by the key of prefix k
(keys.py) and reused only if, in this order:
  1. every local module that cells 1..k loaded still has the content it had;
  2. every cell 1..k would see what it saw: the files it read, the variables, the
     working directory (deps.py);
  3. the paths cells 1..k wrote have the starting state they had (fstravel.py);
  4. the notebook is byte-identical to the one version the process compiled, with the
     same value captures (then the pause is answered with "go"), or the continuation
     check passes against every version in the snapshot's lineage (then it is answered
     with the edited suffix);
Otherwise the next shorter prefix is tried, and at last a fresh run. Each rejected
candidate's reason is kept, for `tonic why` and the notebook view. A record that fails
its checks (records.py, places.py: damaged, or naming a place the notebook may not
write) is ignored, with a note (`Chooser.ignored`) and the snapshot's id in `damaged`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tonic.kernel.driver import Program
from tonic.kernel.protocol import GO, Command, Eval, continues
from tonic.notebook.cells import Notebook, parse
from tonic.notebook.loader import module_compiles
from tonic.notebook.modkind import package_type
from tonic.results import CellResult
from tonic.store import DamagedRecord, SnapshotInfo, Store, StoreError, landing
from tonic.timetravel import continuation, fstravel
from tonic.timetravel.deps import Digests, Surroundings, stale
from tonic.timetravel.keys import NotebookKeys, modules_still_valid, sha256
from tonic.timetravel.places import Places
from tonic.timetravel.records import (
    ANOTHER_VERSION,
    FileChanges,
    RunRecord,
    SnapshotRecord,
    cell_from_meta,
    cell_uses,
    load_run,
)

NO_SNAPSHOT = "no snapshot of this prefix"


@dataclass(frozen=True)
class Verdict:
    """Why the prefix ending at a cell can or cannot be resumed."""

    cell: int
    reusable: bool
    reason: str


@dataclass
class Choice:
    """The snapshot a run resumes from, and how its pause is answered."""

    snapshot_id: str
    record: SnapshotRecord
    pause: int
    cells: tuple[CellResult, ...]
    command: Command
    lineage: list[str]  # the file versions the resumed process will have compiled
    saved_seconds: float
    notes: list[str]

    @property
    def continued(self) -> bool:
        """Whether the process goes on with an edited rest of the file (eval)."""
        return continues(self.command)


# Earlier versions parsed in this process, the most recently used last.
PARSED_KEPT = 8
_PARSED: dict[tuple[str, str, str | None], Notebook] = {}


def _remember(key: tuple[str, str, str | None], nb: Notebook) -> None:
    """Keep `nb` as the newest of _PARSED (the oldest beyond PARSED_KEPT go)."""
    _PARSED.pop(key, None)
    _PARSED[key] = nb
    while len(_PARSED) > PARSED_KEPT:
        del _PARSED[next(iter(_PARSED))]


# (cell, why each snapshot of its prefix cannot be used, the first that can)
_Prefix = tuple[int, list[str], tuple[SnapshotInfo, SnapshotRecord, Command] | None]


class Chooser:
    """Looks up the stored run and the snapshots of one notebook; changes nothing."""

    def __init__(self, program: Program, store: Store, keys: NotebookKeys) -> None:
        self.program = program
        self.nb = program.notebook
        self.store = store
        self.keys = keys
        self.places = Places.of(program.path, store.root)
        self._around: Surroundings | None = None
        self.ignored: list[str] = []  # a note on each damaged record ignored
        self.damaged: list[str] = []  # the snapshots whose records are damaged
        self.blob = sha256(self.nb.data)  # this version's id in the store
        # The snapshots this run takes name this version: the next run judges them.
        _remember(self._key(self.blob), self.nb)

    @property
    def around(self) -> Surroundings:
        """What this run's cells would see (the files' starting states read once)."""
        if self._around is None:
            digest = Digests()
            try:
                last = fstravel.load_last(self.store, self.program.path)
            except DamagedRecord as err:
                last = {}
                self._ignore(fstravel.ignored(err))
            starting = fstravel.starting_states(last, digest)
            program = self.program
            self._around = Surroundings(
                program.env, str(program.cwd), digest, starting, str(program.path)
            )
        return self._around

    def stored_run(self) -> RunRecord | None:
        """The record of a finished run of exactly this notebook, if still valid."""
        try:
            record = load_run(self.store, self.keys.full, self.program.path, len(self.nb.cells))
        except DamagedRecord as err:
            self._ignore(
                f"the stored run's record cannot be used ({err}): ignored, the notebook ran"
            )
            return None
        if record is None or record.files_broken:
            return None
        if modules_still_valid(record.modules) is not None:
            return None
        if self._unfit(record.cells, record.files, len(record.cells)) is not None:
            return None
        return record

    def _unfit(self, cells: list[dict[str, object]], files: FileChanges, k: int) -> str | None:
        """Why cells 1..k of a record would not see what they saw, or why the files
        they wrote cannot be put back (None: they can be reused)."""
        reason = stale(cell_uses(cells), self.around)
        if reason is not None:
            return reason
        path = fstravel.unresumable(files, dict(self.around.starting), self.around.digest)
        if path is None:
            return None
        shown = path
        with contextlib.suppress(ValueError):
            shown = str(Path(path).relative_to(self.program.cwd))
        if files[path][0] == fstravel.UNKNOWN:
            return f"cells 1-{k} changed {shown}, whose content before them tonic did not see"
        return f"cells 1-{k} wrote {shown}, which someone else changed since"

    def verdicts(self) -> list[Verdict]:
        """Every prefix's verdict, longest first (stops at the first reusable one)."""
        verdicts: list[Verdict] = []
        for k, reasons, found in self._prefixes():
            if found is not None:
                verdicts.append(Verdict(k, True, "reusable"))
                return verdicts
            reason = reasons[0] if reasons else NO_SNAPSHOT
            verdicts.append(Verdict(k, False, reason))
        return verdicts

    def choose(self) -> tuple[Choice | None, list[Verdict]]:
        """The longest prefix's usable snapshot (None: run afresh), and why each longer
        prefix's snapshots could not be used."""
        verdicts: list[Verdict] = []
        if not self.nb.clean or not self.program.instrumented.pauses:
            return None, verdicts
        for k, reasons, found in self._prefixes():
            verdicts.extend(Verdict(k, False, r) for r in reasons)
            if found is not None:
                return self._choice(k, *found), verdicts
        return None, verdicts

    def _choice(
        self, k: int, info: SnapshotInfo, record: SnapshotRecord, command: Command
    ) -> Choice:
        cells = tuple(cell_from_meta(self.nb, c) for c in record.cells)
        lineage = list(record.lineage)
        if continues(command):
            lineage.append(self.blob)
        saved = sum(c.ms or 0.0 for c in cells) / 1000.0
        notes = [f"restored cells 1-{k} from a snapshot"]
        return Choice(info.id, record, k, cells, command, lineage, saved, notes)

    def _prefixes(self) -> Iterator[_Prefix]:
        """Longest prefix first: (cell, why each snapshot of it cannot be used, the first
        that can: info, record and the command answering its pause). Stops at that one.

        The snapshots that the ingest worker is still storing count (landed: the run that
        made them named them first), so nothing waits for the store; they are looked at
        before the store's (a worker takes the record away once it has stored one)."""
        prefixes = self.keys.prefixes
        every_landed = landing.landed(self.store.root)
        for k in sorted(prefixes, reverse=True):
            reasons: list[str] = []
            tag = prefixes[k]
            for info in landing.before(every_landed, tag, self.store.find(tag)):
                try:
                    record = SnapshotRecord.from_meta(info.meta, self.places)
                    fstravel.kept(self.store, record.files)
                except DamagedRecord as err:
                    reasons.append(self._damaged(k, info, err))
                    continue
                verdict = self._judge(k, record)
                if not isinstance(verdict, str):
                    yield k, reasons, (info, record, verdict)
                    return
                reasons.append(verdict)
            yield k, reasons, None

    def _ignore(self, note: str) -> None:
        if note not in self.ignored:
            self.ignored.append(note)

    def _damaged(self, k: int, info: SnapshotInfo, err: DamagedRecord) -> str:
        """Why a snapshot whose record fails its checks is not used; a note, unless it
        is merely another version's (which that version may still use)."""
        reason = str(err)
        if reason != ANOTHER_VERSION:
            reason = f"its record is damaged ({err})"
            self._ignore(f"the snapshot after cell {k}: {reason}: ignored")
            if info.id not in self.damaged:
                self.damaged.append(info.id)
        return reason

    def _version(self, blob: str) -> Notebook:
        """An earlier version of the notebook, parsed (kept for the next run of this
        process: `tonic watch` and `tonic serve` judge the same versions again and again,
        this run's own among them; a blob's id is its content's digest)."""
        key = self._key(blob)
        found = _PARSED.get(key)
        if found is None:
            data = self.store.get_blob(blob)
            found = parse(data, filename=key[1], package_type=key[2])
        _remember(key, found)
        return found

    def _key(self, blob: str) -> tuple[str, str, str | None]:
        return (blob, self.program.path.name, package_type(self.program.path)[0])

    def _judge(self, k: int, record: SnapshotRecord) -> str | Command:
        """The command answering the snapshot's pause when it can continue this notebook;
        else why it cannot."""
        changed = modules_still_valid(record.modules)
        if changed is not None:
            return f"{changed} changed since cells 1-{k} loaded it"
        unfit = self._unfit(record.cells, record.files, k)
        if unfit is not None:
            return unfit
        try:
            versions = [self._version(b) for b in record.lineage]
        except (StoreError, OSError) as err:
            return f"its file versions are unreadable ({err})"
        values = list(self.program.instrumented.values)
        if versions and versions[-1].data == self.nb.data and record.values == values:
            # The process runs exactly this file's code from here on.
            return GO
        reason, keep = continuation.verdict(versions, self.nb, k)
        if reason is not None:
            return reason
        if self.nb.kind.esm and not module_compiles(self.nb.data):
            return "the edited file does not compile (node --check): it runs afresh"
        source = continuation.suffix_source(
            self.nb,
            k,
            file=str(self.program.path),
            values=bool(self.program.instrumented.values),
            keep=keep,
        )
        # `check`: the kernel compiles the new file first, as node's loader would, so an
        # early error stops the run before anything of the rest runs.
        text = self.nb.data.decode("utf-8")
        return Eval(source, tuple(values), text, continuation.free_names(self.nb, k))
