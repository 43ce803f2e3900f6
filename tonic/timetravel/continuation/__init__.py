"""Continuing a paused process with an edited file: the check, and the source to eval.

A snapshot holds a node process that compiled an OLD version of the file and is blocked
at pause k (after cell k). If the NEW file has the same bytes up to the end of cell k,
the process can often go on as if it had run NEW from the start: the pause site answers
with the new "suffix" (everything after cell k), which it runs as a direct `eval` inside
the module wrapper (semantics notes §4C). The eval sees the wrapper's scope, `this`,
`arguments`, `require`, `module` and the pending timers of cells 1..k, as node would.

It is not exact when a binding differs between the two worlds (§5 step 4): the wrapper
hoisted the OLD suffix's declarations, and eval can neither initialize a hoisted
`let`/`const`/`class`, nor share its `var`s with the wrapper (strict eval has a var
scope of its own, and so has the arrow function the pause site calls eval in), nor undo
a function that cells 1..k already saw. `check` says when continuing is exact, by
comparing the declarations of the old and new suffix against the names cells 1..k (and
the old functions they can call) refer to. Over-approximating those names is safe: it
only makes tonic fall back to an earlier snapshot, or to a fresh run.

An ES module (no top-level `return`, and eval is no module) runs the new suffix as an
async arrow function in the module's scope, which its pause site awaits (top-level
`await` stays); its imports are bound before the first cell runs, so they must be the
old ones, and the edited cells may export nothing (analysis.py `_module_reason`).

The parts: analysis.py (`check`, `keep_functions`, both at once: `verdict`) reads the
file versions through versions.py and judges their bindings by the rules of rules.py;
suffix.py builds the eval'd source (`suffix_source`). Snapshot keys hash all of them (keys.py).
"""

from __future__ import annotations

from tonic.notebook.cells import Notebook
from tonic.timetravel.continuation.analysis import check, keep_functions, verdict
from tonic.timetravel.continuation.free import free_reads
from tonic.timetravel.continuation.suffix import label, suffix_source
from tonic.timetravel.continuation.versions import code_end, is_strict, split, statements


def free_names(new: Notebook, k: int) -> tuple[str, ...] | None:
    """The names `new`'s suffix after cell k reads that the file never declares (for the
    kernel to check at the pause: free.py), or None when the file is strict code."""
    end = code_end(new, k)
    if is_strict(new) or end is None:
        return None
    return tuple(free_reads(split(new, end)[1].nodes, statements(new)))


__all__ = ["check", "free_names", "keep_functions", "label", "suffix_source", "verdict"]
