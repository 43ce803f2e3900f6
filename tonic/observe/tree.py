"""Which process a fanotify event's pid was, and whether it belongs to the tree.

fanotify gives an event's tgid (a number), not the process: the process may have exited
and, in theory, its number been reused by the time the event is read. The proc connector
gives every fork and exit on the machine with kernel timestamps, so every process's life
(a `Life`: its number, its parent's life, when it exited) is known from the moment the
observer starts, those of exited processes too. A process belongs to the tree iff it is a
root (the namespace's init, a live process found in the namespace at attach time, a live
process later found in it with a /proc check) or a descendant of one.

An event read in a batch was queued after the last read that found the queue empty
(`window`, a CLOCK_MONOTONIC time taken before that read), so the process that made it
was alive after `window`: the candidates for tgid N are N's lives that had not exited
before `window`. One candidate (the usual case), or several that agree: decided. Several
that disagree (N reused within the window: ~pid_max forks in milliseconds), or none
known with the connector's record incomplete: `None`, uncertain.
"""

from __future__ import annotations

import os

from tonic.observe.connector import PROC_EVENT_EXIT, PROC_EVENT_FORK, Connector

_PRUNE_EVERY = 4096


class Life:
    """One process (a thread group) from its fork to its last thread's exit."""

    __slots__ = ("exited", "gen", "member", "parent", "pid")

    def __init__(self, pid: int, parent: Life | None) -> None:
        self.pid = pid
        self.parent = parent
        self.exited: int | None = None  # CLOCK_MONOTONIC ns of the latest thread exit seen
        self.gen = -1  # the attach generation `member` was computed for
        self.member = False


def ns_of(pid: int, which: str = "pid") -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{which}").st_ino
    except OSError:
        return None


class Tree:
    """The lives of the machine's processes, fed by a proc connector, and the tree."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.current: dict[int, Life] = {}  # tgid -> its latest life
        self.past: dict[int, list[Life]] = {}  # tgid -> earlier lives that exited lately
        self.gen = 0
        self.ns: int | None = None  # the tree's PID namespace (inode), None before attach
        self.window = 0  # see the module's docstring
        self._seen = 0

    def drain(self) -> None:
        """Take in the connector's fork and exit events so far."""
        current, past = self.current, self.past
        for ev in self.connector.read():
            if ev.what == PROC_EVENT_FORK:
                if ev.pid != ev.tgid:
                    continue  # a new thread of a known process
                parent = current.get(ev.parent_tgid)
                if parent is None:  # a process older than the observer
                    parent = current[ev.parent_tgid] = Life(ev.parent_tgid, None)
                old = current.get(ev.tgid)
                if old is not None:
                    past.setdefault(ev.tgid, []).append(old)
                current[ev.tgid] = Life(ev.tgid, parent)
                self._seen += 1
                if self._seen % _PRUNE_EVERY == 0:
                    self._prune()
            elif ev.what == PROC_EVENT_EXIT:
                life = current.get(ev.tgid)
                if life is None:
                    life = current[ev.tgid] = Life(ev.tgid, None)
                life.exited = ev.ns

    def _prune(self) -> None:
        window = self.window
        for tgid in list(self.past):
            kept = [life for life in self.past[tgid] if (life.exited or window) >= window]
            if kept:
                self.past[tgid] = kept
            else:
                del self.past[tgid]

    def attach(self, init_pid: int) -> int:
        """The tree becomes init_pid's namespace; returns that namespace's inode."""
        ns = ns_of(init_pid)
        if ns is None:
            raise ProcessLookupError(init_pid)
        self.drain()
        self.gen += 1
        self.ns = ns
        for name in os.listdir("/proc"):
            if name.isdigit() and ns_of(int(name)) == ns:
                self._root(int(name))
        self._root(init_pid)
        return ns

    def _root(self, tgid: int) -> None:
        life = self.current.get(tgid)
        if life is None or life.exited is not None:
            life = self.current[tgid] = Life(tgid, None)
        life.gen, life.member = self.gen, True

    def member(self, tgid: int) -> bool | None:
        """Whether the process that queued an event with this tgid (in the current batch)
        was the tree's: True, False, or None when that cannot be known."""
        life = self.current.get(tgid)
        earlier = self.past.get(tgid)
        if earlier is None:
            if life is None:  # never forked nor exited since we listen: older, alive
                life = self.current[tgid] = Life(tgid, None)
            if life.exited is not None and life.exited < self.window:
                return self._unknown(tgid)
            return self._is_member(life)
        candidates = [x for x in earlier if x.exited is None or x.exited >= self.window]
        if life is not None and (life.exited is None or life.exited >= self.window):
            candidates.append(life)
        if not candidates:
            return self._unknown(tgid)
        verdicts = {self._is_member(x) for x in candidates}
        return verdicts.pop() if len(verdicts) == 1 else None

    def _unknown(self, tgid: int) -> bool | None:
        """No life of tgid was alive in the window: a thread group whose leader exited
        early, or a gap in the connector's record. A live process is checked in /proc."""
        ns = ns_of(tgid)
        if ns is None:
            return None
        return ns == self.ns

    def _is_member(self, life: Life) -> bool:
        gen = self.gen
        chain: list[Life] = []
        node: Life | None = life
        verdict = False
        while node is not None:
            if node.gen == gen:
                verdict = node.member
                break
            chain.append(node)
            node = node.parent
        if not verdict and life.exited is None and life.gen != gen and self.ns is not None:
            # Not a descendant: a live process that joined the namespace (setns) is one
            # too. Checked once per life; its number is its own while it has not exited.
            verdict = ns_of(life.pid) == self.ns
            if verdict:
                chain = [life]
        for x in chain:
            x.gen, x.member = gen, verdict
        return verdict
