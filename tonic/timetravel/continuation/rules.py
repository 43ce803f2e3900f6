"""The rules by which a binding breaks a continuation (semantics notes §5 step 4): each
a function from the declarations of cells 1..k and of the old and new suffix to a
reason, or None when the rule is kept.

The reasons name the notes' rules: (a) cells 1..k use a direct eval or `with`
(analysis.py); (b) cells 1..k refer to a binding the eval cannot make node's: a hoisted
let/const/class/import, or one only one version declares; (c) the eval'd suffix would
get a binding of its own, or a function cells 1..k may have called changed or moved;
(d) the rest of the file would find a stale binding of the old suffix; (e) an eval
would throw a redeclaration SyntaxError. The others are early errors of the new file,
and declarations that mean something else inside the eval'd block.
"""

from __future__ import annotations

from tonic.timetravel.continuation.versions import Decl, Decls

LEXICAL = frozenset({"let", "const", "class", "import"})
# What the module function binds before any cell runs.
WRAPPER_NAMES = frozenset({"exports", "require", "module", "__filename", "__dirname", "arguments"})


def cells_phrase(k: int) -> str:
    return "cell 1" if k == 1 else f"cells 1-{k}"


def _refer(k: int) -> str:
    return f"{cells_phrase(k)} {'refers' if k == 1 else 'refer'} to it"


def _where(decls: list[Decl], side: str) -> str:
    return f"{side} cell {decls[0].cell}"


def _kind(decl: Decl) -> str:
    return "a function in a block" if decl.block else decl.kind


def _functions(decls: list[Decl]) -> list[tuple[str | None, tuple[int, int] | None]]:
    return [(d.text, d.at) for d in decls if d.kind == "function"]


def judge(
    name: str,
    old: list[Decl],
    new: list[Decl],
    *,
    observed: bool,
    strict: bool,
    prefix: Decls,
    new_refs: set[str],
    new_evals: bool,
    k: int,
) -> str | None:
    """Why `name` breaks a continuation, given its declarations in the old and the new
    suffix, and whether cells 1..k (or old functions they call) refer to it."""
    if observed:
        return _seen(name, old, new, strict=strict, prefix=prefix, k=k)
    return _unseen(name, old, new, prefix=prefix, new_refs=new_refs, new_evals=new_evals)


def _seen(
    name: str, old: list[Decl], new: list[Decl], *, strict: bool, prefix: Decls, k: int
) -> str | None:
    """Rules b and c, for a name cells 1..k (or old functions they call) refer to."""
    refer = _refer(k)
    for side, decls in (("old", old), ("new", new)):
        lexical = [d for d in decls if d.kind in LEXICAL]
        if lexical:
            return (
                f"{_where(lexical, side)} declares `{name}` with {lexical[0].kind}, and "
                f"{refer}: eval cannot initialize the binding they see (rule b)"
            )
    if _functions(old) or _functions(new):
        return _function_changed(name, old, new, refer)
    if new:
        return (
            f"{_where(new, 'new')} declares `{name}` with {_kind(new[0])}, and {refer}: "
            f"the eval'd suffix gets a binding of its own{' (strict code)' * strict} "
            "(rule c)"
        )
    if old and not any(d.kind in ("var", "function") for d in prefix.get(name, [])):
        return (
            f"only the old version declares `{name}` (old cell {old[0].cell}), and {refer} (rule b)"
        )
    return None


def _function_changed(name: str, old: list[Decl], new: list[Decl], refer: str) -> str | None:
    """Rules b and c for a function cells 1..k may have seen: it must stay the same."""
    old_fn, new_fn = _functions(old), _functions(new)
    if not old_fn or not new_fn:
        side, decls = ("old", old) if old_fn else ("new", new)
        return (
            f"only the {side} version declares function `{name}` ({side} cell "
            f"{decls[0].cell}), and {refer} (rule b)"
        )
    if [t for t, _ in old_fn] != [t for t, _ in new_fn]:
        return (
            f"function `{name}` changed (cell {new[0].cell}), and {refer}: they "
            "may have called the old one (rule c)"
        )
    if [a for _, a in old_fn] != [a for _, a in new_fn]:
        return (
            f"function `{name}` moved (cell {new[0].cell}), and {refer}: the kept "
            "old function would report old line numbers (rule c)"
        )
    return None  # unchanged: kept, not redeclared (keep_functions)


def _unseen(
    name: str,
    old: list[Decl],
    new: list[Decl],
    *,
    prefix: Decls,
    new_refs: set[str],
    new_evals: bool,
) -> str | None:
    """Rules d and e, for a name cells 1..k do not refer to."""
    if old and not new and name not in prefix and (name in new_refs or new_evals):
        how = "refers to it" if name in new_refs else "calls eval"
        return (
            f"old cell {old[0].cell} declared `{name}`, the edited file does not, and its "
            f"rest {how}: it would find the stale binding (rule d)"
        )
    lexical = [d for d in old if d.kind in LEXICAL]
    hoisted = [d for d in new if d.kind in ("var", "function")]
    if lexical and hoisted:
        return (
            f"old cell {lexical[0].cell} declared `{name}` with {lexical[0].kind}, and cell "
            f"{hoisted[0].cell} declares it with {_kind(hoisted[0])}: an eval in the module "
            "function would throw a redeclaration SyntaxError (rule e)"
        )
    return None


def redeclared(prefix: Decls, suffix: Decls) -> str | None:
    """A top-level name the new file declares twice where one is lexical: an early
    SyntaxError, so node runs no cell, while the eval would throw after cells 1..k ran.
    (Other early errors tree-sitter accepts are the caller's: `node --check` first.)"""
    for name, found in sorted(suffix.items()):
        every = [d for d in prefix.get(name, []) + found if not d.block]
        lexical = [d for d in every if d.kind in LEXICAL]
        if lexical and len(every) > 1:
            cells = sorted({d.cell for d in every})
            where = " and ".join(str(c) for c in cells)
            return (
                f"the edited file declares `{name}` twice (cell{'s' * (len(cells) > 1)} "
                f"{where}): a SyntaxError before any cell runs"
            )
    return None


def block_conflicts(decls: Decls, strict: bool) -> str | None:
    """The suffix runs inside a block, where a function declaration is lexical: it may
    not share its name with a `var`, nor (strict) with another function declaration."""
    for name, found in sorted(decls.items()):
        functions = [d for d in found if d.kind == "function"]
        if not functions:
            continue
        var = [d for d in found if d.kind == "var"]
        if var:
            what = "a function in a block" if var[0].block else "a var"
            return (
                f"cell {functions[0].cell} declares function `{name}` and cell {var[0].cell} "
                f"{what} of that name: inside the eval'd block that means something else"
            )
        if strict and len(functions) > 1:
            return f"strict code declares function `{name}` twice: not allowed in a block"
    return None


def redeclared_var(prefix: Decls, suffix: Decls, observed: frozenset[str]) -> str | None:
    """A `var` (or function) of the new suffix whose name cells 1..k or the module function
    already bind: node shares that binding, with its value; the eval'd suffix gets a
    binding of its own, `undefined` at first. (Unchanged functions in R are kept, and
    judged by rule c instead.)"""
    for name, found in sorted(suffix.items()):
        hoisted = [d for d in found if d.kind in ("var", "function")]
        if not hoisted or (name not in prefix and name not in WRAPPER_NAMES):
            continue
        if name in observed and all(d.kind == "function" for d in found):
            continue
        where = f"{cells_phrase(max(d.cell for d in prefix[name]))}" if name in prefix else "node"
        return (
            f"cell {hoisted[0].cell} declares `{name}` with {_kind(hoisted[0])}, which "
            f"{where} already bound: the eval'd suffix would get a binding of its own"
        )
    return None


def annex_b(prefix: Decls, old: Decls, new: Decls) -> str | None:
    """A sloppy function declared in a block of cells 1..k also binds its name in the
    module, unless a top-level `let`/`const`/`class` anywhere in the file has that name
    (Annex B). The process decided that with the old file; node decides with the new."""
    for name, found in sorted(prefix.items()):
        block = [d for d in found if d.block]
        if not block:
            continue
        before = any(d.kind in LEXICAL for d in old.get(name, []))
        after = any(d.kind in LEXICAL for d in new.get(name, []))
        if before != after:
            which = "old" if before else "new"
            return (
                f"cell {block[0].cell} declares function `{name}` in a block, and only the "
                f"{which} rest of the file declares `{name}` with let/const/class, which "
                "decides whether that function also binds it in the module (Annex B)"
            )
    return None
