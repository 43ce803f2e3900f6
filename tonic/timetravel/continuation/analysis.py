"""The continuation check: may the process paused after cell k go on with the new suffix?

It runs in steps: what the file versions must share (`_prefix_end`), what the process
compiled of the old suffixes (`_compiled`), what cells 1..k can observe (`_observed`:
the names R they and the old functions they call refer to), then the rules (rules.py)
over the declarations of cells 1..k, each old suffix and the new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tree_sitter import Node

from tonic.notebook.cells import Notebook
from tonic.notebook.declarations import FUNCTION_DECLARATIONS
from tonic.notebook.syntax import text, walk
from tonic.timetravel.continuation.rules import (
    annex_b,
    block_conflicts,
    cells_phrase,
    judge,
    redeclared,
    redeclared_var,
)
from tonic.timetravel.continuation.versions import (
    Decls,
    Part,
    bindings,
    code_end,
    declarations,
    direct_eval,
    imports,
    is_strict,
    references,
    shared_end,
    split,
    unfit_in,
)


@dataclass(frozen=True)
class _Analysis:
    """What `check` and `keep_functions` share: cells 1..k, R, and both suffixes."""

    reason: str | None
    observed: frozenset[str] = frozenset()
    olds: tuple[Decls, ...] = ()
    new: Decls | None = None


def _prefix_end(lineage: Sequence[Notebook], new: Notebook, k: int) -> int | str:
    """The end of cell k, which the running version and `new` share byte for byte;
    or why no version of the lineage can continue there with `new`."""
    if not lineage:
        return "no file version is known for the running process"
    running = lineage[-1]
    if any(nb.kind.kind != new.kind.kind for nb in lineage):
        return f"the module kind changed to {new.kind.kind} ({new.kind.reason})"
    if new.unsplit is not None:
        return f"the edited file runs as one piece ({new.unsplit})"
    if k < 1:
        return f"there is no pause {k}"
    end = code_end(running, k)
    if end is None:
        return f"the running version has no code cell {k}"
    if code_end(new, k) != end or running.data[:end] != new.data[:end]:
        return f"{cells_phrase(k)} changed"
    if new.kind.esm:
        return _module_reason(lineage, new, k, end) or end
    return end


def _module_reason(lineage: Sequence[Notebook], new: Notebook, k: int, end: int) -> str | None:
    """What an ES module's continuation cannot do as node: other imports (node links them
    before the first cell runs), `arguments` in the edited cells (their generator
    function binds it, a module does not), or exports of the edited cells (the eval binds
    nothing of the module, whose importers would see the old bindings)."""
    if any(imports(nb) != imports(new) for nb in lineage):
        return "the imports changed: node links them before the first cell runs"
    suffix = split(new, end)[1]
    named = next(
        (
            n
            for root in suffix.nodes
            for n in walk(root)
            if n.type == "identifier" and text(n) == "arguments"
        ),
        None,
    )
    if named is not None:
        return (
            f"line {named.start_point[0] + 1} names `arguments`: the continued cells run in "
            "a function, which binds it"
        )
    for nb in (*lineage, new):
        part = split(nb, end if nb is new or nb is lineage[-1] else shared_end(nb, new, k))[1]
        exported = next((n for n in part.nodes if n.type == "export_statement"), None)
        if exported is not None:
            line = exported.start_point[0] + 1
            return (
                f"line {line} exports from a cell after cell {k}: a continued module "
                "would still export the old binding"
            )
    return None


def _compiled(
    lineage: Sequence[Notebook], new: Notebook, k: int, end: int, *, strict: bool
) -> tuple[list[Decls], dict[str, list[Node]]]:
    """Each version's declarations after the cells it shares with the new file, as they
    were compiled into the process (hoisted by the wrapper, or by an earlier eval's
    block), and the top-level function declarations among them, by name."""
    running = lineage[-1]
    olds: list[Decls] = []
    functions: dict[str, list[Node]] = {}
    for nb in lineage:
        _, part = split(nb, end if nb is running else shared_end(nb, new, k))
        olds.append(declarations(part, strict=strict))
        for stmt in part.nodes:
            if stmt.type in FUNCTION_DECLARATIONS and (n := stmt.child_by_field_name("name")):
                functions.setdefault(text(n), []).append(stmt)
    return olds, functions


def _observed(prefix: Part, functions: dict[str, list[Node]]) -> tuple[set[str], list[Node]]:
    """R: what cells 1..k refer to, and what the hoisted old functions they name refer
    to; and the code that makes R (cells 1..k and those functions)."""
    names = frozenset(b.name.id for s in prefix.nodes for b in bindings(s))
    observed = references(prefix.nodes, names)
    reached: list[Node] = list(prefix.nodes)
    todo = [n for n in observed if n in functions]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for fn in functions[name]:
            reached.append(fn)
            fresh = references([fn]) - observed
            observed |= fresh
            todo.extend(n for n in fresh if n in functions)
    return observed, reached


def _dynamic(reached: list[Node], k: int) -> str | None:
    """Rule a: a direct eval or a `with` in the code that makes R."""
    dynamic = direct_eval(reached)
    if dynamic is None:
        return None
    what = "a with statement" if dynamic.type == "with_statement" else "a direct eval"
    return (
        f"{cells_phrase(k)} (or old functions they call) use {what} "
        f"on line {dynamic.start_point[0] + 1}: any binding may be observed (rule a)"
    )


def _judged(
    olds: list[Decls],
    suffix: Part,
    *,
    prefix_decls: Decls,
    new_decls: Decls,
    observed: set[str],
    strict: bool,
    k: int,
) -> str | None:
    """The first rule a name of an old suffix or of the new one breaks, version by
    version (Annex B's first)."""
    new_refs = references(suffix.nodes)
    new_evals = direct_eval(suffix.nodes) is not None
    for old in olds:
        reason = annex_b(prefix_decls, old, new_decls)
        if reason is not None:
            return reason
        for name in sorted(set(old) | set(new_decls)):
            reason = judge(
                name,
                old.get(name, []),
                new_decls.get(name, []),
                observed=name in observed,
                strict=strict,
                prefix=prefix_decls,
                new_refs=new_refs,
                new_evals=new_evals,
                k=k,
            )
            if reason is not None:
                return reason
    return None


def _analyse(lineage: Sequence[Notebook], new: Notebook, k: int) -> _Analysis:
    end = _prefix_end(lineage, new, k)
    if isinstance(end, str):
        return _Analysis(end)
    strict = is_strict(new)
    if any(is_strict(nb) != strict for nb in lineage):
        return _Analysis("the 'use strict' directive changed")
    for nb in (*lineage, new):
        unfit = unfit_in(nb.data, nb.typescript)
        if unfit is not None:
            what = "deletes a variable" if text(unfit).startswith("delete") else "rebinds eval"
            line = unfit.start_point[0] + 1
            return _Analysis(f"line {line} {what}: a continuation's eval cannot do that as node")
    prefix, suffix = split(new, end)
    prefix_decls = declarations(prefix, strict=strict)
    new_decls = declarations(suffix, strict=strict)
    olds, functions = _compiled(lineage, new, k, end, strict=strict)
    observed, reached = _observed(prefix, functions)
    reason = (
        _dynamic(reached, k)
        or redeclared(prefix_decls, new_decls)
        or block_conflicts(new_decls, strict)
        or redeclared_var(prefix_decls, new_decls, frozenset(observed))
        or _judged(
            olds,
            suffix,
            prefix_decls=prefix_decls,
            new_decls=new_decls,
            observed=observed,
            strict=strict,
            k=k,
        )
    )
    if reason is not None:
        return _Analysis(reason)
    return _Analysis(None, frozenset(observed), tuple(olds), new_decls)


def check(lineage: Sequence[Notebook], new: Notebook, k: int) -> str | None:
    """None when the process paused after cell k may go on with `new`'s suffix and
    behave exactly as `node NEW`; otherwise why not (rule and identifier).

    `lineage` lists every file version compiled into the process, oldest first; the
    last one is the version it is paused in, whose bytes up to the end of cell k `new`
    shares. Earlier versions are assumed to have been continued after passing this check.
    """
    return _analyse(lineage, new, k).reason


def keep_functions(lineage: Sequence[Notebook], new: Notebook, k: int) -> frozenset[str]:
    """Function declarations of the new suffix that cells 1..k may already hold: the
    suffix must not redeclare them, so that they stay the very objects cells 1..k saw
    (and compiled once, as node does). `check` has made sure they are unchanged."""
    return verdict(lineage, new, k)[1]


def verdict(
    lineage: Sequence[Notebook], new: Notebook, k: int
) -> tuple[str | None, frozenset[str]]:
    """`check` and `keep_functions` from one analysis (each alone walks the trees)."""
    analysis = _analyse(lineage, new, k)
    if analysis.reason is not None or analysis.new is None:
        return analysis.reason, frozenset()
    return None, frozenset(
        name
        for name, decls in analysis.new.items()
        if name in analysis.observed
        and any(d.kind == "function" for d in decls)
        and all(any(d.kind == "function" for d in old.get(name, [])) for old in analysis.olds)
    )
