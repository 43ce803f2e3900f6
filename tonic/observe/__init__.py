"""What one process tree does to files, observed with fanotify.

The tree: the processes of one PID namespace (its init's pid given to `Observer.attach`)
and all their descendants, those that exited before their events were read included.
Other processes' activity, in the same folders at the same time, is never reported.

    why = unavailable()              # None, or one line: not root, no fanotify, ...
    with Observer(ignore=[cache]) as ob:   # before the tree starts
        ob.attach(init_pid)
        ...                          # the tree runs a cell, then pauses
        activity = ob.take()         # what it did since the last take

Observed, on every filesystem that could be marked (`Observer.marked`; the others are
in `Observer.unmarked` with why: those are never observed):
- files opened, for reading or writing ("open"), directories opened to list them
  ("opendir"); reads and writes through fds opened earlier are covered by that open;
  an exec'd program or a loaded library is an open too;
- files and directories created ("create": also hard links, symlinks, device nodes;
  "mkdir"), deleted ("delete", "rmdir"), renamed ("move_from" old path, "move_to" new
  path; also over an existing file, which is then gone without a "delete");
- writes ("write"): write(2) and the like, truncation (O_TRUNC, truncate, ftruncate),
  and the close of any file opened for writing (so a writable open never written is
  one too, and mmap writes are seen when the fd they were made through is closed);
- attribute changes ("attrib": chmod, chown, utimes, xattrs, link counts).

Not observed:
- stat(), access(), existsSync(), readlink(), chdir() of what is never opened; failed
  opens (ENOENT, EACCES: nothing was opened); O_PATH opens;
- mmap writes through a mapping whose fd was closed before the writes; writes by
  another process through an fd the tree handed it (they are that process's);
- filesystems that could not be marked (network filesystems, FUSE, ramfs, ...) and
  pseudo filesystems (proc, sysfs, cgroup, devtmpfs, devpts, mqueue, ...), and mounts
  made after the observer started (on a filesystem not marked then);
- files under `ignore` (their events are read and dropped);
- the attribute change of a file already unlinked when its event is read (its delete is
  reported); processes that joined the namespace with setns (nsenter) are the tree's
  only while alive when their events are read.

Paths are the absolute paths in this process's mount namespace, with directories named as
they were at the event (directory renames empty the handle cache; a path read later
through a renamed directory is mapped back). Events come in order, a kind repeated at
a path only after a create, delete or move there; fanotify itself merges consecutive
events on one object, so the order of open/write/attrib within such a merge is the
canonical one (create, open, write, attrib, delete).

`Activity.lost` says when events may be missing (fanotify's queue overflowed, the proc
connector dropped messages, the directory of some events was deleted before their paths
could be known); `Activity.uncertain` holds paths touched by processes that could not be
told the tree's or not (a pid reused within milliseconds): be conservative with them.

The first take after the first attach has the tree's events since its start (node's
start-up too); an attach again forgets whatever was pending. A CRIU restore's own work in
the new namespace is the new tree's: take() once right after the restore to drop it.
Needs root (CAP_SYS_ADMIN for the marks, CAP_DAC_READ_SEARCH for handles, CAP_NET_ADMIN
for the proc connector), Linux >= 5.17 (FAN_RENAME), this process in the initial PID
and network namespaces.
"""

from __future__ import annotations

from tonic.observe.activity import Activity
from tonic.observe.observer import ObserveError, Observer, unavailable

__all__ = ["Activity", "ObserveError", "Observer", "unavailable"]
